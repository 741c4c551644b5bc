"""How a model server runs a model: the `Runtime` interface, and which runtime serves which repo.

A runtime turns a batch of inputs into one output per input. Two exist:
- `onnx` (the default install): ONNX Runtime on CPU plus a `tokenizers` tokenizer, for repos that ship an ONNX
  graph (`model.onnx` or `onnx/model.onnx`) and a `tokenizer.json`, for the tasks in `ONNX_TASKS`; for
  sentence-similarity (sentence-transformers repos) it pools as the repo's `modules.json` says;
- `torch` (the `hubpulse-deployer[torch]` extra): a transformers pipeline, for repos with safetensors weights
  (transformers has no sentence-similarity pipeline: that task is the onnx runtime's only).

`plan` decides from a repo's file list alone (before any download) which runtime serves it and which files
it needs; a repo no runtime can serve is refused with the reason (`Refused`). Pickled weights (`*.bin`, `*.pt`,
...) are never fetched: unpickling runs code.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hubpulse_common.inference import SIMILARITY_TASKS, Input
from hubpulse_deployer.runtime.base import Refused as Refused
from hubpulse_deployer.runtime.base import RuntimeName as RuntimeName

# tasks whose pre- and post-processing the onnx runtime implements
ONNX_TASKS: frozenset[str] = frozenset(
    {"text-classification", "token-classification", "feature-extraction", "sentence-similarity"}
)
ONNX_FILES = ("model.onnx", "onnx/model.onnx")
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
# what a tokenizer and a model config need besides the weights (root of the repo only)
SIDE_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "spiece.model",
        "sentencepiece.bpe.model",
        "source.spm",
        "target.spm",
        "preprocessor_config.json",
        "model.safetensors.index.json",
        # sentence-transformers: the modules (pooling, normalising) and the truncation length
        "modules.json",
        "sentence_bert_config.json",
    }
)


def _side_file(path: str, root: str = "") -> bool:
    """A file the runtime reads besides the weights: SIDE_FILES in the folder `root` (the repo's root, or the one
    an ONNX export keeps its tokenizer in), and the config of a sentence-transformers pooling module
    (`1_Pooling/config.json`)."""
    folder, _, name = path.rpartition("/")
    pooling = name == "config.json" and "/" not in folder and folder.endswith("_Pooling")
    return (folder == root.rstrip("/") and name in SIDE_FILES) or pooling


class Runtime(Protocol):
    """A loaded model. `predict_batch` is called from one thread at a time (the model server runs it in one
    worker thread, off the event loop), so a batcher can merge concurrent requests into one call."""

    name: RuntimeName
    task: str

    def predict_batch(self, inputs: Sequence[Input]) -> list[Any]:
        """One JSON-serialisable output per input, in order."""
        ...


@dataclass(frozen=True)
class Plan:
    """The runtime that serves a repo and the files it loads (exact repo paths: the download's allow list)."""

    runtime: RuntimeName
    files: tuple[str, ...]
    # the folder the tokenizer and the configs are read from ("" the repo's root; "onnx" for an export that keeps
    # them beside its graph only)
    root: str = ""


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("transformers") is not None


def plan(task: str, files: Iterable[str]) -> Plan:
    """Which runtime serves a repo with these files for `task`, and what to download. Raises `Refused`."""
    listed = set(files)
    side = tuple(sorted(f for f in listed if _side_file(f)))
    onnx = next((f for f in ONNX_FILES if f in listed), None)
    root = _tokenizer_root(onnx, listed)
    if onnx is not None and root is not None and task in ONNX_TASKS:
        # external weights of a large graph sit beside it (`model.onnx_data`, `model.onnx.data`)
        external = tuple(sorted(f for f in listed if f != onnx and f.startswith(onnx) and "/" not in f[len(onnx) :]))
        if root:  # the folder's own files, and the root's where it has none of that name (config.json)
            side = tuple(
                sorted(f for f in listed if _side_file(f, root) or (_side_file(f) and f"{root}/{f}" not in listed))
            )
        return Plan("onnx", (onnx, *external, *side), root)
    safetensors = tuple(sorted(f for f in listed if f.endswith(".safetensors") and "/" not in f))
    if safetensors and task in SIMILARITY_TASKS:
        raise Refused(f"this deployer cannot serve it: {_not_onnx(onnx, task)}, and {task} has no PyTorch pipeline")
    if safetensors:
        if not torch_installed():
            why = _not_onnx(onnx, task)
            raise Refused(
                f"this deployer cannot serve it: {why}, and its safetensors weights need the PyTorch runtime, "
                "which is not installed (install hubpulse-deployer[torch])"
            )
        return Plan("torch", (*safetensors, *side))
    pickled = sorted(f for f in listed if f.endswith(PICKLED_SUFFIXES))
    if pickled:
        raise Refused(
            f"it ships only pickled weights ({', '.join(pickled[:3])}), which are never loaded: unpickling runs "
            "code; hubpulse loads ONNX graphs and safetensors only"
        )
    if onnx is not None:
        raise Refused(f"this deployer cannot serve it: {_not_onnx(onnx, task)}")
    raise Refused("it has no weights hubpulse can load (an ONNX graph with tokenizer.json, or safetensors)")


def _tokenizer_root(onnx: str | None, listed: set[str]) -> str | None:
    """Where the graph's `tokenizer.json` is: the repo's root (transformers/optimum exports, Xenova/*), else the
    graph's own folder (an export pushed as a whole into `onnx/`); None when neither has one."""
    if "tokenizer.json" in listed:
        return ""
    folder = onnx.rpartition("/")[0] if onnx is not None else ""
    return folder if folder and f"{folder}/tokenizer.json" in listed else None


def _not_onnx(onnx: str | None, task: str) -> str:
    """Why the ONNX runtime does not serve a repo (its graph `onnx`, if any) for `task`."""
    if task not in ONNX_TASKS:
        return f"the onnx runtime serves only {', '.join(sorted(ONNX_TASKS))}, not {task}"
    if onnx is not None:
        return f"its ONNX graph ({onnx}) has no tokenizer.json, at the repo's root or beside it"
    return "the repo has no ONNX graph (model.onnx or onnx/model.onnx) with a tokenizer.json"


def load(model_dir: Path, task: str) -> Runtime:
    """The runtime for a downloaded model folder. Raises `Refused`."""
    # tokenizers' thread pool (rayon) costs more CPU per input than one thread at the batch sizes a server sees
    # (measured in docs/decisions/deployer.md); a model server is parallel through batching and replicas, and its
    # spare cores belong to the other services. An operator's setting wins.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    files = [p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()]
    chosen = plan(task, files)
    if chosen.runtime == "onnx":
        from hubpulse_deployer.runtime.onnx_runtime import OnnxRuntime

        return OnnxRuntime(model_dir, chosen.files[0], task, root=model_dir / chosen.root)
    from hubpulse_deployer.runtime.torch_runtime import TorchRuntime

    return TorchRuntime(model_dir, task)
