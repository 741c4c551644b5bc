"""Tiny demo models the replay Hub hosts, generated locally and deterministically (no download).

Each is a small ONNX graph (embedding, a dense tanh layer, a task head) with seeded random weights, built with
`onnx.helper`, and a BERT-style WordPiece `tokenizer.json` over a vocabulary built from a fixed corpus: the
files a transformers ONNX export ships (`onnx/model.onnx`, `tokenizer.json`, `config.json`), so the deployer's
default runtime (ONNX Runtime) serves them without PyTorch. Generated once per data dir on first use; the
commit sha is the hash of the files, so the same code and library versions give the same sha on every machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx
    from tokenizers import Tokenizer

AUTHOR = "hubpulse-demo"
# what the demo repos ship: ONNX graphs (the listing, the detail and the README all say so)
LIBRARY = "onnx"
# Bumped when the generated files change, so a cache built by an older version is not served.
FORMAT = "onnx-2"
_HIDDEN = 32
_MAX_LENGTH = 128
# Words the vocabulary is learnt from: enough for WordPiece to tokenize everyday English into pieces.
_CORPUS = [
    "the",
    "a",
    "an",
    "this",
    "that",
    "these",
    "those",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "have",
    "has",
    "had",
    "do",
    "does",
    "did",
    "not",
    "no",
    "yes",
    "good",
    "great",
    "excellent",
    "amazing",
    "love",
    "like",
    "enjoy",
    "happy",
    "wonderful",
    "best",
    "fine",
    "nice",
    "awesome",
    "perfect",
    "bad",
    "terrible",
    "awful",
    "hate",
    "dislike",
    "sad",
    "worst",
    "poor",
    "boring",
    "broken",
    "slow",
    "wrong",
    "ugly",
    "angry",
    "movie",
    "film",
    "model",
    "product",
    "service",
    "food",
    "place",
    "day",
    "time",
    "people",
    "thing",
    "way",
    "world",
    "life",
    "work",
    "it",
    "i",
    "you",
    "he",
    "she",
    "we",
    "they",
    "me",
    "my",
    "your",
    "our",
    "their",
    "and",
    "or",
    "but",
    "if",
    "then",
    "so",
    "very",
    "really",
    "quite",
    "too",
    "with",
    "for",
    "from",
    "to",
    "of",
    "in",
    "on",
    "at",
    "by",
    "about",
    "as",
    "into",
    "over",
    "after",
    "before",
    "under",
    "again",
    "new",
    "old",
    "paris",
    "london",
    "berlin",
    "tokyo",
    "hugging",
    "face",
    "hub",
    "transformer",
    "deploy",
    "predict",
    "trend",
]


@dataclass(frozen=True)
class DemoModel:
    name: str
    pipeline_tag: str
    labels: tuple[str, ...]
    seed: int

    @property
    def repo_id(self) -> str:
        return f"{AUTHOR}/{self.name}"


DEMO_MODELS: dict[str, DemoModel] = {
    m.repo_id: m
    for m in (
        DemoModel("tiny-text-classifier", "text-classification", ("NEGATIVE", "POSITIVE"), seed=1),
        DemoModel("tiny-token-classifier", "token-classification", ("O", "B-LOC", "I-LOC", "B-ORG", "I-ORG"), seed=2),
        DemoModel("tiny-feature-extractor", "feature-extraction", (), seed=3),
        # laid out as a sentence-transformers repo (modules.json, a mean-pooling module), as all-MiniLM-L6-v2 is
        DemoModel("tiny-sentence-embedder", "sentence-similarity", (), seed=4),
    )
}


@dataclass(frozen=True)
class RepoFileInfo:
    path: str
    size: int
    sha256: str
    git_oid: str  # sha1 of the git blob, what the Hub calls `oid` / `blob_id`


@dataclass(frozen=True)
class BuiltRepo:
    model: DemoModel
    root: Path
    files: tuple[RepoFileInfo, ...]
    sha: str  # the commit sha: a hash of every file's path and content

    def file(self, path: str) -> RepoFileInfo | None:
        return next((f for f in self.files if f.path == path), None)


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _vocabulary() -> list[str]:
    """A WordPiece vocabulary built by rule, not trained (training order varies between runs): special tokens,
    the corpus words, and every character alone and as a continuation, so any ASCII text tokenizes."""
    chars = sorted(set("".join(_CORPUS)) | set("0123456789.,!?'-"))
    # one-letter words ("a", "i") are characters too: each token once, so ids stay below the vocabulary size
    return list(
        dict.fromkeys(
            [
                "[PAD]",
                "[UNK]",
                "[CLS]",
                "[SEP]",
                "[MASK]",
                *sorted(set(_CORPUS)),
                *chars,
                *(f"##{c}" for c in chars),
            ]
        )
    )


def _readme(model: DemoModel) -> str:
    return (
        f"---\nlibrary_name: {LIBRARY}\npipeline_tag: {model.pipeline_tag}\nlicense: apache-2.0\n"
        f"tags:\n- onnx\n- hubpulse-demo\n---\n# {model.repo_id}\n\nA tiny {model.pipeline_tag} model with random "
        "weights, generated by hubpulse so that deploy, predict and monitor work offline. Its outputs are real "
        "inference of an untrained network: deterministic, not meaningful.\n"
    )


def _tokenizer(max_length: int) -> Tokenizer:
    """A BERT-style WordPiece tokenizer (lower-cased, [CLS] ... [SEP]) over `_vocabulary()`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(_vocabulary())}
    unknown, padding = "[UNK]", "[PAD]"
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=unknown, max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=vocab[padding], pad_token=padding)
    return tokenizer


def _graph(model: DemoModel, vocab_size: int) -> onnx.ModelProto:
    """Embedding -> dense tanh layer (`last_hidden_state`), then a linear head: per token (token
    classification) or on the attention-masked mean (text classification). Inputs and outputs are named as a
    transformers ONNX export names them."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(model.seed)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32), name)

    labels = len(model.labels)
    initializers = [
        weight("embeddings", vocab_size, _HIDDEN),
        weight("dense", _HIDDEN, _HIDDEN),
        weight("dense_bias", _HIDDEN),
    ]
    nodes = [
        helper.make_node("Gather", ["embeddings", "input_ids"], ["embedded"]),
        helper.make_node("MatMul", ["embedded", "dense"], ["projected"]),
        helper.make_node("Add", ["projected", "dense_bias"], ["biased"]),
        helper.make_node("Tanh", ["biased"], ["last_hidden_state"]),
    ]
    batch: list[str | int] = ["batch", "sequence"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, batch) for n in ("input_ids", "attention_mask")]
    if model.pipeline_tag in ("feature-extraction", "sentence-similarity"):  # token vectors; pooled by the runtime
        output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [*batch, _HIDDEN])
    else:
        initializers += [weight("head", _HIDDEN, labels), weight("head_bias", labels)]
        if model.pipeline_tag == "token-classification":
            pooled = "last_hidden_state"
            shape = [*batch, labels]
        else:
            # the mean over real tokens only, so padding in a batch does not change an input's scores
            initializers += [
                numpy_helper.from_array(np.array([2], dtype=np.int64), "axis_2"),
                numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1"),
            ]
            nodes += [
                helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
                helper.make_node("Unsqueeze", ["mask", "axis_2"], ["mask_3d"]),
                helper.make_node("Mul", ["last_hidden_state", "mask_3d"], ["masked"]),
                helper.make_node("ReduceSum", ["masked", "axis_1"], ["summed"], keepdims=0),
                helper.make_node("ReduceSum", ["mask", "axis_1"], ["count"], keepdims=1),
                helper.make_node("Div", ["summed", "count"], ["mean"]),
            ]
            pooled = "mean"
            shape = ["batch", labels]
        nodes += [
            helper.make_node("MatMul", [pooled, "head"], ["scores"]),
            helper.make_node("Add", ["scores", "head_bias"], ["logits"]),
        ]
        output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)
    graph = helper.make_graph(nodes, model.name, inputs, [output], initializers)
    # an opset and IR version every onnxruntime of the last years loads
    built = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8, producer_name="hubpulse"
    )
    onnx.checker.check_model(built, full_check=True)
    return built


def _generate(model: DemoModel, target: Path) -> None:
    import onnx

    target.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(_MAX_LENGTH)
    tokenizer.save(str(target / "tokenizer.json"))
    (target / "vocab.txt").write_text("\n".join(_vocabulary()) + "\n")
    labels = dict(enumerate(model.labels))
    config = {
        "model_type": "bert",
        "hidden_size": _HIDDEN,
        "max_position_embeddings": _MAX_LENGTH,
        "vocab_size": tokenizer.get_vocab_size(),
        "pad_token_id": tokenizer.token_to_id("[PAD]"),
        **(
            {"id2label": {str(i): v for i, v in labels.items()}, "label2id": {v: i for i, v in labels.items()}}
            if labels
            else {}
        ),
    }
    (target / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer_config = {
        "do_lower_case": True,
        "model_max_length": _MAX_LENGTH,
        "tokenizer_class": "BertTokenizer",
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    }
    (target / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, sort_keys=True) + "\n")
    (target / "onnx").mkdir(exist_ok=True)
    onnx.save_model(_graph(model, tokenizer.get_vocab_size()), str(target / "onnx" / "model.onnx"))
    if model.pipeline_tag == "sentence-similarity":
        _sentence_transformers_files(target)
    (target / "README.md").write_text(_readme(model))


def _sentence_transformers_files(target: Path) -> None:
    """What sentence-transformers saves beside the transformer: its modules, the pooling, the max length."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (target / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (target / "1_Pooling").mkdir(exist_ok=True)
    pooling = {
        "word_embedding_dimension": _HIDDEN,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }
    (target / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    (target / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": _MAX_LENGTH, "do_lower_case": False}) + "\n"
    )


def _describe(model: DemoModel, root: Path) -> BuiltRepo:
    infos = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        data = path.read_bytes()
        infos.append(
            RepoFileInfo(
                path=path.relative_to(root).as_posix(),
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                git_oid=_git_blob_oid(data),
            )
        )
    digest = hashlib.sha1(usedforsecurity=False)
    for info in infos:
        digest.update(f"{info.path}\0{info.sha256}\n".encode())
    return BuiltRepo(model=model, root=root, files=tuple(infos), sha=digest.hexdigest())


class DemoRepos:
    """Builds each demo model once under `cache_dir` (thread-safe) and describes its files."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._lock = threading.Lock()
        self._built: dict[str, BuiltRepo] = {}

    def get(self, repo_id: str) -> BuiltRepo | None:
        model = DEMO_MODELS.get(repo_id)
        if model is None:
            return None
        with self._lock:
            if repo_id not in self._built:
                self._built[repo_id] = self._build(model)
            return self._built[repo_id]

    def warm(self) -> None:
        """Build every demo model now, so the first download (a deployment) does not wait for it."""
        for repo_id in DEMO_MODELS:
            self.get(repo_id)

    def _build(self, model: DemoModel) -> BuiltRepo:
        root = self.cache_dir / FORMAT / model.name
        done = root / ".complete"
        if not done.exists():
            # build beside, then rename: a crash halfway never leaves a half model that looks complete
            staging = self.cache_dir / FORMAT / f".{model.name}.{os.getpid()}.tmp"
            _generate(model, staging)
            (staging / ".complete").touch()
            if root.exists():
                shutil.rmtree(root)
            staging.rename(root)
        return _describe(model, root)


def default_cache_dir() -> Path:
    base = os.environ.get("HUBPULSE_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "hubpulse")
    return Path(base) / "demo-models"
