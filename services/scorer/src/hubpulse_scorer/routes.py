"""The scorer's HTTP routes: a model's explanation, computed on demand (the gateway's model detail calls it)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response

from hubpulse_common.http import NO_NUL
from hubpulse_scorer.explanations import Explainer

router = APIRouter(tags=["explanations"])


@router.get(
    "/explanation",
    summary="The model's latest score's top contributions, by the version that scored it (computed once, kept)",
)
async def explanation(
    request: Request,
    model_id: Annotated[str, Query(min_length=1, max_length=300, pattern=NO_NUL, description="e.g. org/name")],
) -> Response:
    """`{"model_id", "snapshot_date", "model_version", "explanation": [{"feature", "value", "contribution"}]}`;
    404 `model_not_found`, `model_not_scored` or `model_version_not_found`."""
    explainer: Explainer = request.app.state.explainer
    found = await explainer.of_model(model_id)
    head = orjson.dumps(
        {"model_id": found.model_id, "snapshot_date": found.snapshot_date, "model_version": found.model_version}
    )
    # the stored explanation is already the JSON list: spliced in, not parsed and encoded again
    return Response(head[:-1] + b',"explanation":' + found.explanation.encode() + b"}", media_type="application/json")
