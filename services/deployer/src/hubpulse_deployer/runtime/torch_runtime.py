"""The optional runtime (`hubpulse-deployer[torch]`): a transformers pipeline on PyTorch, CPU."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from hubpulse_common.inference import Input
from hubpulse_deployer.runtime.base import Refused, RuntimeName


class TorchRuntime:
    name: RuntimeName = "torch"

    def __init__(self, model_dir: Path, task: str) -> None:
        try:
            from transformers import pipeline
        except ImportError as exc:
            raise Refused("the PyTorch runtime is not installed (install hubpulse-deployer[torch])") from exc
        self.task = task
        # the task is only known at run time; the overloads type pipelines by literal task names
        self._pipe = pipeline(cast(Any, task), model=str(model_dir), device="cpu")

    def predict_batch(self, inputs: Sequence[Input]) -> list[Any]:
        outputs: list[Any] = self._pipe(list(inputs))
        return outputs
