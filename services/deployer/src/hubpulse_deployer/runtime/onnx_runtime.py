"""The default runtime: an ONNX graph on ONNX Runtime (CPU) behind a `tokenizers` tokenizer.

The graph takes the inputs a transformers ONNX export takes (`input_ids`, `attention_mask`, optionally
`token_type_ids`, int64) and gives `logits` (classification) or `last_hidden_state` (feature extraction) first.
Post-processing follows the transformers pipelines' defaults, so outputs have the same shape either runtime:
text-classification `{"label", "score"}` (softmax; sigmoid for one label or multi-label), token-classification
one `{"entity", "score", "index", "word", "start", "end"}` per token not labelled `O`, feature-extraction
`[[vector per token]]`. Inputs longer than the model's positions are truncated, as the pipelines can be told to.

sentence-similarity follows sentence-transformers (the Inference API's answer for that task): each text is embedded
by the graph and pooled as the repo's pooling module says (`modules.json`, `1_Pooling/config.json`; mean without
them), truncated at `sentence_bert_config.json`'s `max_seq_length`, and the answer is the cosine of the source
sentence with each sentence.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from hubpulse_common.inference import SIMILARITY_TASKS, Input
from hubpulse_deployer.runtime.base import Refused, RuntimeName

Floats = npt.NDArray[np.floating[Any]]
_DEFAULT_MAX_LENGTH = 512
_PAD_TOKENS = ("[PAD]", "<pad>")
# graph input -> the `Encoding` attribute that feeds it
_FEEDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _softmax(logits: Floats) -> Floats:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    result: Floats = shifted / shifted.sum(axis=-1, keepdims=True)
    return result


def _sigmoid(logits: Floats) -> Floats:
    result: Floats = 1.0 / (1.0 + np.exp(-logits))
    return result


# Models whose position ids start after the padding index (transformers' `create_position_ids_from_input_ids`):
# RoBERTa's 514 positions take 512 tokens.
_OFFSET_POSITIONS = frozenset(
    {"roberta", "xlm-roberta", "camembert", "longformer", "mpnet", "data2vec-text", "xmod", "roberta-prelayernorm"}
)


# sentence-transformers' pooling modes, in the order its Pooling module concatenates them
_POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")
# the modules whose work this runtime does (the graph is the Transformer; cosine makes Normalize a no-op)
_APPLIED_MODULES = frozenset({"Transformer", "Pooling", "Normalize"})
# texts per forward pass for sentence-similarity (a call may bring MAX_BATCH pairs of 33 texts each)
_SIMILARITY_CHUNK = 64


def pooling_modes(model_dir: Path) -> tuple[str, ...]:
    """The pooling a sentence-transformers repo asks for (`modules.json` and its Pooling module's config), in
    sentence-transformers' order; ("mean_tokens",) for a repo without them (its default). Raises `Refused` for a
    module this runtime does not apply (a Dense layer, for one)."""
    modules = json.loads((model_dir / "modules.json").read_text()) if (model_dir / "modules.json").exists() else []
    kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: str(m.get("path", "")) for m in modules}
    extra = sorted(set(kinds) - _APPLIED_MODULES)
    if extra:
        raise Refused(
            f"its sentence-transformers modules include {', '.join(extra)}, which the onnx runtime does not apply "
            f"(it applies {', '.join(sorted(_APPLIED_MODULES))})"
        )
    config = _read_json(model_dir / kinds["Pooling"] / "config.json") if "Pooling" in kinds else {}
    defaults = {"mean_tokens": True}  # sentence-transformers' Pooling defaults: mean only
    modes = tuple(m for m in _POOLING_MODES if config.get(f"pooling_mode_{m}", defaults.get(m, False)))
    return modes or ("mean_tokens",)


def pool(tokens: Floats, mask: npt.NDArray[np.int64], modes: Sequence[str]) -> Floats:
    """One vector per text from its token vectors, as sentence-transformers' Pooling module computes it."""
    weights = mask[..., None].astype(tokens.dtype)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    parts: list[Floats] = []
    for mode in modes:
        if mode == "cls_token":
            parts.append(tokens[:, 0])
        elif mode == "max_tokens":
            parts.append(np.where(weights > 0, tokens, -1e9).max(axis=1))
        elif mode in ("mean_tokens", "mean_sqrt_len_tokens"):
            total = (tokens * weights).sum(axis=1)
            parts.append(total / (counts if mode == "mean_tokens" else np.sqrt(counts)))
        elif mode == "weightedmean_tokens":
            positional = weights * np.arange(1, tokens.shape[1] + 1, dtype=tokens.dtype)[None, :, None]
            parts.append((tokens * positional).sum(axis=1) / np.clip(positional.sum(axis=1), 1e-9, None))
        else:  # lasttoken: the last real token of each row
            last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
            parts.append(tokens[np.arange(len(tokens)), last] * weights[np.arange(len(tokens)), last])
    pooled: Floats = np.concatenate(parts, axis=1)
    return pooled


def position_limit(config: dict[str, Any]) -> Any:
    """The most tokens the model's position embeddings take (config.json's `max_position_embeddings`)."""
    positions, pad = config.get("max_position_embeddings"), config.get("pad_token_id")
    if config.get("model_type") in _OFFSET_POSITIONS and isinstance(positions, int):
        return positions - (1 if pad is None else int(pad)) - 1
    return positions


class OnnxRuntime:
    name: RuntimeName = "onnx"

    def __init__(self, model_dir: Path, model_file: str, task: str, root: Path | None = None) -> None:
        """`root`: the folder of the tokenizer and the configs (`runtime.Plan.root`; the model folder by default)."""
        self.task = task
        root = model_dir if root is None else root
        # the folder's own file, else the repo root's (an export may keep only its tokenizer beside its graph)
        config = _read_json(root / "config.json") or _read_json(model_dir / "config.json")
        tokenizer_config = _read_json(root / "tokenizer_config.json") or _read_json(model_dir / "tokenizer_config.json")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initializers would fill the server log
        # idle intra-op threads sleep instead of spinning: a spinning pool burns the cores that the deployer and
        # the gateway need between calls (docs/decisions/deployer.md)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(model_dir / model_file), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types, all with a message
            raise Refused(f"ONNX Runtime cannot load {model_file}: {str(exc)[:300]}") from exc
        inputs = {i.name for i in self._session.get_inputs()}
        if "input_ids" not in inputs:
            raise Refused(f"{model_file} takes {sorted(inputs)}, not input_ids: not a text model export")
        self._feeds = [name for name in _FEEDS if name in inputs]
        self._tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        self._pooling = pooling_modes(model_dir) if task in SIMILARITY_TASKS else ()
        # sentence-transformers truncates at its own max_seq_length (all-MiniLM-L6-v2: 256 of 512 positions)
        sentence_limit = (
            _read_json(model_dir / "sentence_bert_config.json").get("max_seq_length") if self._pooling else None
        )
        limits = [
            v
            for v in (position_limit(config), tokenizer_config.get("model_max_length"), sentence_limit)
            if isinstance(v, int) and 0 < v < 1_000_000
        ]
        self._tokenizer.enable_truncation(min(limits, default=_DEFAULT_MAX_LENGTH))
        padding = self._tokenizer.padding
        if padding is None:
            pad = next((t for t in _PAD_TOKENS if self._tokenizer.token_to_id(t) is not None), None)
            pad_id = config.get("pad_token_id") if pad is None else self._tokenizer.token_to_id(pad)
            self._tokenizer.enable_padding(pad_id=int(pad_id or 0), pad_token=pad or "")
        elif padding.get("length") is not None:
            # a fixed width (sentence-transformers' exports pad to 128) with truncation at the model's own limit:
            # longer inputs stay longer than the width and a batch's rows differ in length; pad to the longest
            self._tokenizer.enable_padding(**{k: v for k, v in padding.items() if k != "length"})
        self._labels = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
        self._multi_label = config.get("problem_type") == "multi_label_classification"
        # offsets (characters per token) only matter to token-classification; the fast path skips computing them
        tokenizer = self._tokenizer
        self._encode = tokenizer.encode_batch if task == "token-classification" else tokenizer.encode_batch_fast

    def _label(self, index: int) -> str:
        return self._labels.get(index, f"LABEL_{index}")

    def _run(self, encodings: list[Encoding], also: tuple[str, ...] = ()) -> tuple[Floats, dict[str, Any]]:
        """The graph's first output, and the arrays built for it (with those in `also`). Only what is needed is
        built: each `Encoding` attribute read makes a Python list in the tokenizer."""
        arrays = {
            name: np.array([getattr(e, _FEEDS[name]) for e in encodings], dtype=np.int64)
            for name in dict.fromkeys((*self._feeds, *also))
        }
        first: Floats = self._session.run(None, {name: arrays[name] for name in self._feeds})[0]
        return first, arrays

    def predict_batch(self, inputs: Sequence[Input]) -> list[Any]:
        if self._pooling:
            return self._similarities(inputs)
        encodings = self._encode(list(inputs))
        output, _ = self._run(encodings)
        if self.task == "text-classification":
            return self._classify(output)
        if self.task == "token-classification":
            return [self._tokens(scores, e) for scores, e in zip(output, encodings, strict=True)]
        # feature-extraction: the pipeline's shape, [1, tokens, hidden] per input, without the padding
        return [[vectors[: sum(e.attention_mask)].tolist()] for vectors, e in zip(output, encodings, strict=True)]

    def _similarities(self, pairs: Sequence[Input]) -> list[list[float]]:
        """Per pair, the cosine of its source sentence's embedding with each of its sentences'."""
        texts: list[str] = []
        spans = []
        for pair in pairs:
            assert isinstance(pair, dict), "parse_inputs admits only pairs for sentence-similarity"
            start = len(texts)
            texts += [pair["source_sentence"], *pair["sentences"]]
            spans.append((start, len(texts)))
        vectors = np.concatenate(
            [self._embed(texts[i : i + _SIMILARITY_CHUNK]) for i in range(0, len(texts), _SIMILARITY_CHUNK)]
        )
        unit = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return [(unit[start + 1 : end] @ unit[start]).tolist() for start, end in spans]

    def _embed(self, texts: list[str]) -> Floats:
        output, arrays = self._run(self._encode(texts), also=("attention_mask",))
        if output.ndim == 2:  # an export that pools in the graph (`sentence_embedding`)
            return output
        return pool(output, arrays["attention_mask"], self._pooling)

    def _classify(self, logits: Floats) -> list[Any]:
        probabilities = _sigmoid(logits) if self._multi_label or logits.shape[-1] == 1 else _softmax(logits)
        # one conversion per batch, not numpy scalar indexing per input
        best, scores = probabilities.argmax(axis=-1).tolist(), probabilities.max(axis=-1).tolist()
        return [{"label": self._label(i), "score": p} for i, p in zip(best, scores, strict=True)]

    def _tokens(self, logits: Floats, encoding: Encoding) -> list[dict[str, Any]]:
        probabilities = _softmax(logits)
        entities = []
        for index, (token, special, (start, end)) in enumerate(
            zip(encoding.tokens, encoding.special_tokens_mask, encoding.offsets, strict=True)
        ):
            best = int(probabilities[index].argmax())
            label = self._label(best)
            if special or label == "O":
                continue
            entities.append(
                {
                    "entity": label,
                    "score": float(probabilities[index][best]),
                    "index": index,
                    "word": token,
                    "start": start,
                    "end": end,
                }
            )
        return entities
