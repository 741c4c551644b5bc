"""The local runtimes: which runtime serves which repo, the ONNX runtime on the demo models, the model server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from auth.conftest import serving
from huggingface_hub import ModelInfo
from prometheus_client.parser import text_string_to_metric_families

from deployer.conftest import model_client
from hubpulse.hub import create_app as create_hub_app
from hubpulse.hub.demo_models import DEMO_MODELS, DemoRepos
from hubpulse.platform.stores import free_port
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_deployer.model_server import ModelServer
from hubpulse_deployer.runtime import ONNX_TASKS, Refused, load, plan, torch_installed
from hubpulse_deployer.runtime.fetch import require_public, too_large
from hubpulse_deployer.runtime.onnx_runtime import position_limit
from hubpulse_deployer.settings import DeployerSettings

XENOVA_STYLE = [
    "README.md",
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "onnx/model.onnx",
    "onnx/model_quantized.onnx",
    "onnx/model.onnx_data",
    "pytorch_model.bin",
    "model.safetensors",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRepos:
    return DemoRepos(tmp_path_factory.mktemp("demo-models"))


def test_onnx_plan_fetches_the_graph_its_data_and_tokenizer_only() -> None:
    chosen = plan("text-classification", XENOVA_STYLE)
    assert chosen.runtime == "onnx"
    assert chosen.files == (
        "onnx/model.onnx",
        "onnx/model.onnx_data",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    )


@pytest.mark.skipif(torch_installed(), reason="the default install has no PyTorch")
def test_without_torch_safetensors_only_repos_are_refused_naming_the_extra() -> None:
    with pytest.raises(Refused, match=r"hubpulse-deployer\[torch\]"):
        plan("text-classification", ["config.json", "model.safetensors", "tokenizer.json"])
    # an ONNX graph does not serve a task the onnx runtime has no post-processing for
    with pytest.raises(Refused, match="serves only"):
        plan("text-generation", ["onnx/model.onnx", "tokenizer.json", "model.safetensors"])


def test_a_refusal_gives_the_reason_that_applies() -> None:
    # Xenova/bert-base-uncased: an ONNX export for fill-mask, a task the onnx runtime does not serve
    with pytest.raises(Refused, match="not fill-mask"):
        plan("fill-mask", ["config.json", "tokenizer.json", "onnx/model.onnx", "onnx/model_quantized.onnx"])
    # a graph with no tokenizer.json anywhere
    with pytest.raises(Refused, match=r"ONNX graph \(onnx/model.onnx\) has no tokenizer.json, at the repo's root"):
        plan("text-classification", ["config.json", "model.safetensors", "onnx/model.onnx", "onnx/vocab.txt"])


def test_an_export_that_keeps_its_tokenizer_beside_its_graph_is_served(demo: DemoRepos, tmp_path: Path) -> None:
    """An optimum export pushed as a whole into onnx/: the tokenizer and its config sit only there, the model's
    config.json (labels) at the root."""
    chosen = plan(
        "text-classification", ["config.json", "onnx/model.onnx", "onnx/tokenizer.json", "onnx/tokenizer_config.json"]
    )
    assert (chosen.runtime, chosen.root) == ("onnx", "onnx")
    assert chosen.files == ("onnx/model.onnx", "config.json", "onnx/tokenizer.json", "onnx/tokenizer_config.json")
    built = demo.get("hubpulse-demo/tiny-text-classifier")
    assert built is not None
    root = tmp_path / "beside"
    shutil.copytree(built.root, root)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (root / name).rename(root / "onnx" / name)
    texts = ["I love this movie", "awful"]
    assert load(root, "text-classification").predict_batch(texts) == load(
        built.root, "text-classification"
    ).predict_batch(texts)


def test_roberta_takes_twoposition_limit_fewer_than_it_embeds() -> None:
    # RoBERTa's position ids start after its padding index (1): 514 embeddings, 512 tokens
    assert position_limit({"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}) == 512
    assert position_limit({"model_type": "xlm-roberta", "max_position_embeddings": 514}) == 512
    assert position_limit({"model_type": "bert", "max_position_embeddings": 512, "pad_token_id": 0}) == 512


def test_a_tokenizer_padding_to_a_fixed_width_still_batches(demo: DemoRepos, tmp_path: Path) -> None:
    """sentence-transformers' exports pad to 128 and truncate at the model's limit: a longer input stayed longer
    than the others and the batch's rows could not be stacked."""
    built = demo.get("hubpulse-demo/tiny-text-classifier")
    assert built is not None
    root = tmp_path / "fixed"
    shutil.copytree(built.root, root)
    tokenizer = json.loads((root / "tokenizer.json").read_text())
    tokenizer["padding"]["strategy"] = {"Fixed": 8}
    (root / "tokenizer.json").write_text(json.dumps(tokenizer))
    runtime = load(root, built.model.pipeline_tag)
    texts = ["I love this movie", "the plot was long and slow and then it ended without a reason at all"]
    batch = runtime.predict_batch(texts)
    assert batch[0]["score"] == pytest.approx(runtime.predict_batch(texts[:1])[0]["score"], abs=1e-5)
    assert batch[1]["score"] == pytest.approx(runtime.predict_batch(texts[1:])[0]["score"], abs=1e-5)


def test_the_size_limit_counts_what_would_be_downloaded_and_leaves_a_refused_repo_to_its_reason() -> None:
    """A 10 GB repo of pickled weights is refused for its pickles (nothing of it is downloaded), not for its size;
    a servable repo is measured by its planned files only."""
    gb = 1_000_000_000
    pickled = ModelInfo(id="a/p", siblings=[{"rfilename": "pytorch_model.bin", "size": 10 * gb}], usedStorage=10 * gb)
    assert too_large(pickled, "text-classification", gb) is None
    with pytest.raises(Refused, match="pickled weights"):
        plan("text-classification", [s.rfilename for s in pickled.siblings or []])
    files = {"onnx/model.onnx": 2 * gb, "tokenizer.json": 1000, "pytorch_model.bin": 5 * gb}
    onnx = ModelInfo(id="a/o", siblings=[{"rfilename": f, "size": n} for f, n in files.items()], usedStorage=7 * gb)
    assert too_large(onnx, "text-classification", gb) == 2 * gb + 1000  # not the pickles beside it
    assert too_large(onnx, "text-classification", 3 * gb) is None


def test_pickled_weights_are_never_planned() -> None:
    with pytest.raises(Refused, match="pickled weights"):
        plan("text-classification", ["config.json", "pytorch_model.bin", "tokenizer.json"])
    with pytest.raises(Refused, match="no weights"):
        plan("text-classification", ["README.md"])
    assert all(not f.endswith(".bin") for f in plan("feature-extraction", XENOVA_STYLE).files)


def test_platform_token_reads_public_ungated_repos_only() -> None:
    require_public(ModelInfo(id="org/open", private=False, gated=False))
    with pytest.raises(Refused, match="private"):
        require_public(ModelInfo(id="org/secret", private=True, gated=False))
    with pytest.raises(Refused, match="gated"):
        require_public(ModelInfo(id="org/gated", private=False, gated="manual"))


def test_no_token_configured_means_none_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_TOKEN", "HUBPULSE_HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # False, not None: huggingface_hub would send a token saved on the machine for None
    assert DeployerSettings().hub_token() is False
    assert DeployerSettings(hf_token="hf_x").hub_token() == "hf_x"


@pytest.mark.parametrize("repo_id", sorted(DEMO_MODELS))
def test_demo_models_run_on_onnx_runtime(demo: DemoRepos, repo_id: str) -> None:
    built = demo.get(repo_id)
    assert built is not None
    task = built.model.pipeline_tag
    assert task in ONNX_TASKS
    runtime = load(built.root, task)
    assert runtime.name == "onnx"
    texts = ["I love this movie", "paris is a city", "x " * 3000]  # the last is longer than the model's 128
    if task == "sentence-similarity":  # one pair in, one cosine per sentence out (test_sentence_similarity.py)
        pair = {"source_sentence": texts[0], "sentences": texts}
        (similarities,) = runtime.predict_batch([pair])
        assert similarities[0] == pytest.approx(1.0, abs=1e-6)
        assert similarities == pytest.approx(runtime.predict_batch([pair, {**pair, "sentences": ["x"]}])[0], abs=1e-6)
        return
    batch = runtime.predict_batch(texts)
    assert len(batch) == len(texts)
    # padding in a batch changes nothing: each input scores as it does alone
    alone = runtime.predict_batch(texts[:1])[0]
    if task == "text-classification":
        assert batch[0]["label"] in built.model.labels
        assert batch[0]["score"] == pytest.approx(alone["score"], abs=1e-5)
    elif task == "token-classification":
        assert all(e["entity"] in built.model.labels and e["entity"] != "O" for e in batch[0])
        assert [e["score"] for e in batch[0]] == pytest.approx([e["score"] for e in alone], abs=1e-5)
    else:
        vectors = batch[0][0]
        assert len(vectors) == 6  # [CLS] i love this movie [SEP]
        assert vectors[1] == pytest.approx(alone[0][1], abs=1e-5)
        assert len(batch[2][0]) == 128


@pytest.mark.parametrize("repo_id", sorted(DEMO_MODELS))
def test_fast_tokenizer_path_gives_the_full_paths_outputs(demo: DemoRepos, repo_id: str) -> None:
    """Tasks that need no character offsets tokenize without them (`encode_batch_fast`): same outputs, exactly."""
    built = demo.get(repo_id)
    assert built is not None
    runtime = load(built.root, built.model.pipeline_tag)
    texts: list[Any] = [
        f"call {i}: the movie was {'good ' * i}{'awful' if i % 2 else 'great'}, Paris é" for i in range(20)
    ]
    texts.append("x " * 3000)
    if built.model.pipeline_tag == "sentence-similarity":
        texts = [{"source_sentence": t, "sentences": texts[:3]} for t in texts]
    fast = [runtime.predict_batch(texts[i : i + size]) for size in (1, 16) for i in range(0, len(texts), size)]
    runtime._encode = runtime._tokenizer.encode_batch  # type: ignore[attr-defined]
    full = [runtime.predict_batch(texts[i : i + size]) for size in (1, 16) for i in range(0, len(texts), size)]
    assert fast == full


def test_a_loaded_runtime_tokenizes_in_one_thread_unless_told(demo: DemoRepos, monkeypatch: pytest.MonkeyPatch) -> None:
    built = demo.get("hubpulse-demo/tiny-text-classifier")
    assert built is not None
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    load(built.root, built.model.pipeline_tag)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")  # the operator's choice
    load(built.root, built.model.pipeline_tag)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"


async def test_model_server_routes_answer_as_they_did_on_fastapi(demo: DemoRepos) -> None:
    """Same bodies, statuses and /healthz fields as when the model server was a FastAPI app."""
    built = demo.get("hubpulse-demo/tiny-text-classifier")
    assert built is not None
    runtime = load(built.root, built.model.pipeline_tag)
    server = ModelServer(runtime, max_batch_size=4, max_wait_ms=2.5, token="t0k")
    token = {"authorization": "Bearer t0k"}
    async with model_client(server) as client:
        health = await client.get("/healthz")
        no_token = await client.post("/predict", json={"inputs": ["good"]})
        wrong = await client.post("/predict", json={"inputs": ["good"]}, headers={"authorization": "Bearer nope"})
        not_json = await client.post("/predict", content=b"{", headers=token)
        empty = await client.post("/predict", json={"inputs": []}, headers=token)
        good = await client.post("/predict", json={"inputs": ["I love this movie", "awful"]}, headers=token)
        wrong_method = await client.get("/predict")
        unknown = await client.get("/nope")
        slash = await client.post("/predict/?x=1", json={"inputs": ["good"]}, headers=token)
        counted = (await client.get("/healthz")).json()["batching"]
    assert health.status_code == 200
    assert health.headers["content-type"] == "application/json"
    batching = {"max_batch_size": 4, "max_wait_ms": 2.5, "batches": 0, "inputs": 0}
    assert health.json() == {"status": "ok", "task": "text-classification", "runtime": "onnx", "batching": batching}
    for refused in (no_token, wrong):
        assert refused.status_code == 401
        assert refused.json() == {"error": {"code": "unauthorized", "message": "this model server wants its token"}}
    assert not_json.status_code == 422
    assert not_json.json()["error"]["code"] == "bad_input"
    assert empty.status_code == 422
    assert empty.json() == {"error": {"code": "bad_input", "message": "inputs is an empty list"}}
    assert good.status_code == 200
    assert [o["label"] for o in good.json()["outputs"]] == [
        o["label"] for o in runtime.predict_batch(["I love this movie", "awful"])
    ]
    assert (wrong_method.status_code, wrong_method.json(), wrong_method.headers["allow"]) == (
        405,
        {"detail": "Method Not Allowed"},
        "POST",
    )
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Not Found"})
    assert (slash.status_code, slash.headers["location"]) == (307, f"{client.base_url}/predict?x=1")
    assert (counted["batches"], counted["inputs"]) == (1, 2)


async def test_model_server_metrics_show_calls_in_flight_and_answered(demo: DemoRepos) -> None:
    """What the kubernetes target's HPAs scale on (through the custom metrics API): a call held by the batcher's
    wait is in flight until it is answered."""
    built = demo.get("hubpulse-demo/tiny-text-classifier")
    assert built is not None
    server = ModelServer(load(built.root, built.model.pipeline_tag), max_batch_size=4, max_wait_ms=400, token=None)

    def samples(text: str) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("status", "")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    async with model_client(server) as client:
        held = asyncio.create_task(client.post("/predict", json={"inputs": ["good"]}))
        await asyncio.sleep(0.1)
        during = await client.get("/metrics")
        assert (await held).status_code == 200
        assert (await client.post("/predict", json={"inputs": []})).status_code == 422
        after = await client.get("/metrics")
    assert during.headers["content-type"].startswith("text/plain")
    assert samples(during.text)[("hubpulse_inflight_requests", "")] == 1
    assert samples(after.text)[("hubpulse_inflight_requests", "")] == 0
    assert samples(after.text)[("hubpulse_model_server_calls_total", "200")] == 1
    assert samples(after.text)[("hubpulse_model_server_calls_total", "422")] == 1


def test_demo_model_files_are_reproducible(demo: DemoRepos, tmp_path: Path) -> None:
    repo_id = "hubpulse-demo/tiny-text-classifier"
    first, second = demo.get(repo_id), DemoRepos(tmp_path).get(repo_id)
    assert first is not None
    assert second is not None
    assert first.sha == second.sha
    assert {f.path for f in first.files} >= {"onnx/model.onnx", "tokenizer.json", "config.json"}
    assert not any(f.path.endswith((".safetensors", ".bin")) for f in first.files)


async def test_model_server_reports_its_runtime(demo: DemoRepos) -> None:
    built = demo.get("hubpulse-demo/tiny-text-classifier")
    assert built is not None
    server = ModelServer(load(built.root, built.model.pipeline_tag), max_batch_size=1, max_wait_ms=0, token=None)
    async with model_client(server) as client:
        assert (await client.get("/healthz")).json()["runtime"] == "onnx"
        answer = await client.post("/predict", json={"inputs": ["good " * 800]})
    # longer than the model's positions: truncated, not a 500 (audit M9)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["label"] in ("NEGATIVE", "POSITIVE")


async def test_model_server_downloads_and_serves_a_hub_model(demo: DemoRepos, tmp_path: Path) -> None:
    """The kubernetes target's container command: `--model-id` fetches the planned files, then serves them."""
    hub = create_hub_app(SyntheticHub(5, 2, seed=1))
    hub.state.demo_repos = demo
    port = free_port()
    async with serving(hub) as hub_url:
        env = {**os.environ, "HF_ENDPOINT": hub_url, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        command = [
            sys.executable,
            "-m",
            "hubpulse_deployer.model_server",
            "--model-id",
            "hubpulse-demo/tiny-token-classifier",
            "--task",
            "token-classification",
            "--port",
            str(port),
        ]
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                for _ in range(600):
                    assert server.poll() is None, server.stderr.read().decode()[-500:] if server.stderr else ""
                    try:
                        health = await client.get("/healthz")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                assert health.json()["runtime"] == "onnx"
                answer = await client.post("/predict", json={"inputs": ["paris is in europe"]})
            assert answer.status_code == 200, answer.text
            assert isinstance(answer.json()["outputs"][0], list)
        finally:
            server.terminate()
            server.wait(10)
    # only the files the runtime loads were downloaded
    fetched = {p.name for p in tmp_path.rglob("*") if p.is_file() and "snapshots" in p.parts}
    assert "README.md" not in fetched
    assert "model.onnx" in fetched
