"""The benchmarks' own parts: the search mix and the training bench's command."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from hubpulse.bench.search import zipf_mix
from hubpulse.cli import app


def test_the_bench_mix_is_zipf_like() -> None:
    queries = [f"/v1/models?q=w{i}" for i in range(1000)]
    mix = zipf_mix(queries, 20_000, 1.0, seed=3)
    assert mix == zipf_mix(queries, 20_000, 1.0, seed=3), "reproducible"
    first, tenth = mix.count(queries[0]), mix.count(queries[9])
    assert 7 < first / tenth < 14, "the k-th most popular is sent about 1/k as often"
    assert len(set(mix)) > 500, "and a long tail of rare queries"


def test_bench_train_trains_on_the_synthetic_hub() -> None:
    result = CliRunner().invoke(app, ["bench", "train", "--models", "1500", "--days", "30", "--negatives", "20000"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["models"] == 1500
    assert report["positives"] > 0
    assert report["rows"] > report["positives"]


def test_bench_train_refuses_an_unknown_label() -> None:
    result = CliRunner().invoke(app, ["bench", "train", "--label", "viral"])
    assert result.exit_code == 2
