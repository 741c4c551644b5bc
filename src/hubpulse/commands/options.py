"""Option checks and option declarations shared by the commands."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_type_hints

import typer
from typer.models import ParameterInfo


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


def config_options(config: type[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A command taking a `config` dataclass first: the fields annotated with a typer option are its flags (before
    the command's own parameters), and the command is called with the dataclass built from them. Each flag is
    declared once, on the field, instead of once in the command and again as the config's default."""
    hints = get_type_hints(config, include_extras=True)
    flags = [
        field
        for field in dataclasses.fields(config)
        if any(isinstance(meta, ParameterInfo) for meta in getattr(hints[field.name], "__metadata__", ()))
    ]

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own_hints = get_type_hints(command, include_extras=True)
        _config, *own = inspect.signature(command).parameters.values()
        keyword = inspect.Parameter.KEYWORD_ONLY
        parameters = [
            inspect.Parameter(
                field.name,
                keyword,
                annotation=hints[field.name],
                default=inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default,
            )
            for field in flags
        ]
        parameters += [parameter.replace(kind=keyword, annotation=own_hints[parameter.name]) for parameter in own]

        @functools.wraps(command)
        def run(**values: Any) -> None:
            command(config(**{field.name: values.pop(field.name) for field in flags}), **values)

        # what typer reads: the signature's parameters and their annotations
        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        return run

    return decorate
