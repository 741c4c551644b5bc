"""`hubpulse hub serve` refuses bad arguments with one clear line."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from hubpulse.commands.hub import register
from hubpulse_common.errors import UserFacingError


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of"),
        (["--synthetic", "10", "--history", "x.csv"], "exactly one of"),
        (["--synthetic", "0"], "--synthetic"),
        (["--synthetic", "10", "--start-date", "soon"], "--start-date"),
        (["--synthetic", "10", "--rate-429", "2"], "--rate-429"),
        (["--synthetic", "10", "--quota", "-1"], "--quota"),
        (["--history", "/nonexistent/file.csv.gz"], "no such history file"),
        (["--synthetic", "10", "--day-seconds", "-1"], "--day-seconds"),
        (["--history", "x.csv", "--day-seconds", "5"], "needs --synthetic"),
    ],
)
def test_bad_arguments_are_user_facing(args: list[str], message: str):
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["hub", "serve", *args])
    assert isinstance(result.exception, UserFacingError)
    assert message in str(result.exception)
