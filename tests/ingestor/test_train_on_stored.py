"""`hubpulse train` without --history: the model is trained on the snapshots the platform has stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from model.conftest import make_history  # tests/model/conftest.py (pytest puts tests/ on sys.path)
from typer.testing import CliRunner

from hubpulse.cli import app
from hubpulse_common.errors import InputError
from hubpulse_scorer.model.artifact import TrainedModel

runner = CliRunner()


def _run(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args, terminal_width=200)
    if result.exception is not None:
        raise result.exception
    return result.exit_code, result.output


async def _train(tmp_path: Path, name: str, *args: str) -> TrainedModel:
    out = tmp_path / f"{name}.hpm"
    # the command runs its own event loop: keep it off the test's
    code, output = await asyncio.to_thread(_run, ["train", "--no-register", "--out", str(out), *args])
    assert code == 0, output
    return TrainedModel.from_bytes(out.read_bytes())


@pytest.mark.usefixtures("settings")
async def test_train_on_stored_snapshots_is_the_model_of_the_same_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no stored snapshots to train on"):  # the CLI's main prints it, exit 2
        await asyncio.to_thread(_run, ["train", "--no-register", "--out", str(tmp_path / "m.hpm")])

    path = tmp_path / "history.csv"
    make_history().to_csv(path, index=False)
    code, output = await asyncio.to_thread(_run, ["import", str(path)])
    assert code == 0, output

    from_file = await _train(tmp_path, "file", "--history", str(path))
    stored = await _train(tmp_path, "stored")
    # the stored rows come back typed and ordered as load_history gives them: the same data, the same model
    assert stored.metadata.data_hash == from_file.metadata.data_hash
    assert stored.metadata.backtest == from_file.metadata.backtest
    assert stored.metadata.threshold == from_file.metadata.threshold
    assert stored.to_bytes() != b""

    streamed = await _train(tmp_path, "streamed", "--max-rows", "1000")  # above it: the day-by-day scale path
    assert streamed.metadata.backtest is None
    assert streamed.metadata.training_window == stored.metadata.training_window
    assert streamed.metadata.validation_window == stored.metadata.validation_window
    assert streamed.metadata.threshold == stored.metadata.threshold  # every negative kept at this size: same rows
