"""`python -m hubpulse_gateway.openapi_document`: the gateway's OpenAPI document as committed in
docs/openapi.json (`make openapi`; a test checks it for drift). Its own module: it builds the app, which installs
`openapi.install_openapi`, so the two cannot share one without an import cycle."""

from __future__ import annotations

import json
import sys

from hubpulse_gateway.app import create_app
from hubpulse_gateway.settings import GatewaySettings


def render() -> str:
    return json.dumps(create_app(GatewaySettings()).openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
