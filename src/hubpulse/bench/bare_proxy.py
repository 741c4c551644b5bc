"""The floor of one Python HTTP hop, for `hubpulse bench inference`: an ASGI app on uvicorn (httptools, uvloop)
that forwards each request's body (and its Authorization header, the model server's token) to one URL with aiohttp
and answers what it got. No FastAPI, no middlewares, no credentials checked, no events: what any Python service on
the predict path costs at least per call.

    python -m hubpulse.bench.bare_proxy --target http://127.0.0.1:PORT/predict --port PORT
"""

from __future__ import annotations

import aiohttp
import typer
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send


async def read_body(receive: Receive) -> bytes:
    """An ASGI request's whole body."""
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def send_json(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def proxy_app(target: str) -> ASGIApp:
    session: aiohttp.ClientSession | None = None

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal session
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if session is None:
            session = aiohttp.ClientSession()
        sent = {"content-type": "application/json"}
        for name, value in scope["headers"]:
            if name == b"authorization":  # the model server's token
                sent["authorization"] = value.decode("latin-1")
        async with session.post(target, data=body, headers=sent) as answer:
            content, status = await answer.read(), answer.status
        await send_json(send, status, content)

    return app


def main(target: str = typer.Option(...), port: int = typer.Option(...)) -> None:
    uvicorn.run(proxy_app(target), host="127.0.0.1", port=port, log_level="warning", access_log=False, http="httptools")


if __name__ == "__main__":
    typer.run(main)
