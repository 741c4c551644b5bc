"""Option checks shared by the commands."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def output_file(value: Path | None) -> Path | None:
    """A file the command will write when it is done: its folder must exist and be writable now, so that a
    typo fails at once with a usage error instead of a traceback after minutes of work."""
    if value is None:
        return None
    folder = value.parent  # Path("x").parent is Path(".")
    if not folder.is_dir():
        raise typer.BadParameter(f"{value}: the folder {folder} does not exist")
    if value.is_dir():
        raise typer.BadParameter(f"{value} is a folder, not a file")
    if not os.access(folder, os.W_OK):
        raise typer.BadParameter(f"{value}: the folder {folder} is not writable")
    return value
