"""The web app: one HTML shell at `/`, ES modules and vendored assets under `/static` (no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from hubpulse_common.asgi import HttpMiddleware
from hubpulse_common.http import DOCS_ASSETS

STATIC = Path(__file__).resolve().parents[1] / "static"

# The web app loads only its own scripts, styles and sockets, and no other site may frame it (clickjacking of the
# deploy and delete buttons). The Swagger UI page bootstraps with an inline script: it keeps the other headers only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]


# built once, not per response
_WITH_CSP = (*HEADERS, (b"content-security-policy", CSP.encode()))
_WITHOUT_CSP = tuple(HEADERS)


class SecurityHeadersMiddleware(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra = _WITHOUT_CSP if scope["path"].startswith(("/docs", DOCS_ASSETS)) else _WITH_CSP

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
