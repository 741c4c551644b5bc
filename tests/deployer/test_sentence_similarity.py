"""sentence-similarity, the task of sentence-transformers repos (all-MiniLM-L6-v2 and its kind, the Hub's most
downloaded models): planned from the repo's real file list, pooled as its modules say, answered as the Inference
API answers (one cosine per sentence), through the model server's HTTP route too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deployer.conftest import model_client
from hubpulse.hub.demo_models import DemoRepos
from hubpulse_common.errors import InputError
from hubpulse_common.inference import MAX_BATCH, parse_inputs
from hubpulse_deployer.model_server import ModelServer
from hubpulse_deployer.runtime import Refused, load, plan
from hubpulse_deployer.runtime.onnx_runtime import pool

TASK = "sentence-similarity"
# sentence-transformers/all-MiniLM-L6-v2's files (main), as public copies of the repo list them
MINILM = [
    ".gitattributes",
    "1_Pooling/config.json",
    "README.md",
    "config.json",
    "config_sentence_transformers.json",
    "data_config.json",
    "model.safetensors",
    "modules.json",
    "onnx/model.onnx",
    "onnx/model_O1.onnx",
    "onnx/model_qint8_avx512.onnx",
    "onnx/model_quint8_avx2.onnx",
    "openvino/openvino_model.bin",
    "openvino/openvino_model.xml",
    "pytorch_model.bin",
    "rust_model.ot",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "tf_model.h5",
    "tokenizer.json",
    "tokenizer_config.json",
    "train_script.py",
    "vocab.txt",
]
MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRepos:
    return DemoRepos(tmp_path_factory.mktemp("demo-models"))


def _repo(demo: DemoRepos, root: Path, *, pooling: dict[str, Any] | None, max_seq_length: int = 128) -> Path:
    """The demo feature extractor laid out as a sentence-transformers repo (modules, pooling, max length)."""
    built = demo.get("hubpulse-demo/tiny-feature-extractor")
    assert built is not None
    shutil.copytree(built.root, root)
    (root / "modules.json").write_text(json.dumps(MODULES))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    if pooling is not None:
        (root / "1_Pooling").mkdir()
        (root / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 16, **pooling}))
    return root


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_a_sentence_transformers_repo_is_planned_on_onnx_with_its_modules() -> None:
    chosen = plan(TASK, MINILM)
    assert chosen.runtime == "onnx"
    assert chosen.files == (
        "onnx/model.onnx",
        "1_Pooling/config.json",
        "config.json",
        "modules.json",
        "sentence_bert_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    )
    # without an ONNX graph: no PyTorch pipeline does this task, so the reason says that, not "install torch"
    with pytest.raises(Refused, match="no PyTorch pipeline"):
        plan(TASK, [f for f in MINILM if not f.startswith("onnx/")])


def test_mean_pooling_cosines_match_the_token_vectors_the_graph_gives(demo: DemoRepos, tmp_path: Path) -> None:
    root = _repo(demo, tmp_path / "mean", pooling={"pooling_mode_mean_tokens": True})
    similar = load(root, TASK)
    tokens = load(root, "feature-extraction")  # the same graph, answering its token vectors
    source, sentences = "paris is a city", ["paris is a city", "I love this movie", "the city of paris"]
    (answer,) = similar.predict_batch([{"source_sentence": source, "sentences": sentences}])
    mean = {t: np.array(tokens.predict_batch([t])[0][0]).mean(axis=0) for t in [source, *sentences]}
    assert answer == pytest.approx([_cosine(mean[source], mean[s]) for s in sentences], abs=1e-5)
    assert answer[0] == pytest.approx(1.0, abs=1e-6)
    assert len({round(a, 6) for a in answer}) == 3


def test_the_pooling_module_decides_and_padding_in_a_batch_changes_nothing(demo: DemoRepos, tmp_path: Path) -> None:
    root = _repo(demo, tmp_path / "cls", pooling={"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    similar, tokens = load(root, TASK), load(root, "feature-extraction")
    pairs = [
        {
            "source_sentence": "I love this movie",
            "sentences": ["awful", "the plot was long and slow and then it ended"],
        },
        {"source_sentence": "paris", "sentences": ["a city"]},
    ]
    batch = similar.predict_batch(pairs)
    first = {
        t: np.array(tokens.predict_batch([t])[0][0][0]) for p in pairs for t in [p["source_sentence"], *p["sentences"]]
    }
    for pair, answer in zip(pairs, batch, strict=True):
        assert answer == pytest.approx(
            [_cosine(first[pair["source_sentence"]], first[s]) for s in pair["sentences"]], abs=1e-5
        )
        assert answer == pytest.approx(similar.predict_batch([pair])[0], abs=1e-6)  # alone, unpadded


def test_texts_are_cut_at_the_repos_max_seq_length(demo: DemoRepos, tmp_path: Path) -> None:
    # 8 tokens: [CLS], six words, [SEP]; what follows the sixth word is not seen
    root = _repo(demo, tmp_path / "short", pooling={"pooling_mode_mean_tokens": True}, max_seq_length=8)
    similar = load(root, TASK)
    same_start = "the plot was long and slow"
    (answer,) = similar.predict_batch(
        [
            {
                "source_sentence": same_start + " and then it ended",
                "sentences": [same_start + " but it was a movie", "paris"],
            }
        ]
    )
    assert answer[0] == pytest.approx(1.0, abs=1e-6)
    assert answer[1] < 0.999


def test_a_module_the_runtime_does_not_apply_is_refused_by_name(demo: DemoRepos, tmp_path: Path) -> None:
    root = _repo(demo, tmp_path / "dense", pooling={"pooling_mode_mean_tokens": True})
    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    (root / "modules.json").write_text(json.dumps([*MODULES[:2], dense]))
    with pytest.raises(Refused, match="modules include Dense"):
        load(root, TASK)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ("paris", r'inputs must be an object \{"source_sentence"'),
        ({"source_sentence": "paris"}, r"got \['source_sentence'\]"),
        ({"source_sentence": "paris", "sentences": []}, "inputs.sentences must be a non-empty list"),
        ({"source_sentence": " ", "sentences": ["a"]}, "inputs.source_sentence is empty"),
        ([{"source_sentence": "a", "sentences": ["b", 3]}], r"inputs\[0\].sentences\[1\] must be a string"),
        ({"source_sentence": "a", "sentences": ["b"] * (MAX_BATCH + 1)}, f"at most {MAX_BATCH} sentences"),
    ],
)
def test_a_malformed_pair_is_refused_naming_the_field(inputs: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_inputs(TASK, {"inputs": inputs})


async def test_the_model_server_answers_a_pair_and_a_batch_of_pairs(demo: DemoRepos, tmp_path: Path) -> None:
    runtime = load(_repo(demo, tmp_path / "served", pooling={"pooling_mode_mean_tokens": True}), TASK)
    pair = {"source_sentence": "paris is a city", "sentences": ["the city of paris", "I love this movie"]}
    async with model_client(ModelServer(runtime, max_batch_size=4, max_wait_ms=2.0, token=None)) as client:
        one = await client.post("/predict", json={"inputs": pair})
        many = await client.post("/predict", json={"inputs": [pair, {**pair, "sentences": ["paris"]}]})
        text = await client.post("/predict", json={"inputs": "paris"})
    assert one.status_code == 200
    assert one.json()["outputs"] == [pytest.approx(runtime.predict_batch([pair])[0], abs=1e-6)]
    assert many.status_code == 200
    assert [len(o) for o in many.json()["outputs"]] == [2, 1]
    assert text.status_code == 422
    assert "source_sentence" in text.json()["error"]["message"]


def _reference(vectors: np.ndarray, mode: str) -> np.ndarray:
    """One row's pooling, its padding already cut off (what sentence-transformers computes for it)."""
    if mode == "cls_token":
        return vectors[0]
    if mode == "max_tokens":
        return vectors.max(axis=0)
    if mode == "mean_tokens":
        return vectors.mean(axis=0)
    if mode == "mean_sqrt_len_tokens":
        return vectors.sum(axis=0) / np.sqrt(len(vectors))
    if mode == "weightedmean_tokens":
        weights = np.arange(1, len(vectors) + 1)[:, None]
        return (vectors * weights).sum(axis=0) / weights.sum()
    return vectors[-1]


@pytest.mark.parametrize(
    "modes",
    [
        ("cls_token",),
        ("max_tokens",),
        ("mean_tokens",),
        ("mean_sqrt_len_tokens",),
        ("weightedmean_tokens",),
        ("lasttoken",),
        ("cls_token", "mean_tokens"),
    ],
)
def test_each_pooling_mode_ignores_the_padding(modes: tuple[str, ...]) -> None:
    rng = np.random.default_rng(7)
    lengths = [5, 2, 7]
    tokens = rng.standard_normal((3, 7, 4)).astype(np.float32)
    mask = np.array([[1] * n + [0] * (7 - n) for n in lengths], dtype=np.int64)
    pooled = pool(tokens, mask, modes)
    for row, n in enumerate(lengths):
        expected = np.concatenate([_reference(tokens[row, :n], mode) for mode in modes])
        assert pooled[row] == pytest.approx(expected, abs=1e-5)
