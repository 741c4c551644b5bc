"""The data plane of predict: the gateway calls a `local` deployment's model server itself.

The deployer stays the control plane: it owns the deployments, their state and endpoints, and the model servers'
lifecycle (it starts them, watches them and turns a dead one's deployment `failed`). The gateway reads the
endpoint from the deployment it already fetches for the call (cached 2 s, `routes/deployments.py`) and sends the
call to `{url}/predict` with the server's token, which it derives from the secret it shares with the deployer
(`HUBPULSE_MODEL_SERVER_SECRET`, `hubpulse_common.inference.model_server_token`). Without that secret, and for
the other targets (a Space, a Lambda or a cluster Service the gateway has no credentials or route for), predict
goes through the deployer as before. So do calls with an Idempotency-Key: the deployer keeps their answers.

A call that never reached a server that would run it (`NotSent`: connection refused, or a server that refuses the
token because it serves another deployment at that address now) may go through the deployer instead; one that
was sent but got no answer (`Lost`: the server died mid-call, or timed out) may have run, and is answered 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cachetools import LRUCache

from hubpulse_common.inference import model_server_token
from hubpulse_gateway.http1 import AnswerLost, ConnectFailed, Http1Pool
from hubpulse_gateway.settings import GatewaySettings


class NotSent(Exception):
    """No model server ran the call: safe to send it again elsewhere."""


class Lost(Exception):
    """Sent, and no answer came: the model may have run."""


class ModelServers:
    """Keep-alive connections to the model servers of `local` deployments; one per gateway app."""

    def __init__(self, secret: str, *, timeout_s: float, connect_timeout_s: float) -> None:
        self._secret = secret
        self._pool = Http1Pool(timeout_s=timeout_s, connect_timeout_s=connect_timeout_s)
        # a server's token is a pure function of (deployment, address): an HMAC per call for the same few is waste
        self._tokens: LRUCache[tuple[str, str], str] = LRUCache(maxsize=10_000)

    def endpoint(self, deployment: dict[str, Any]) -> tuple[str, str] | None:
        """(url, token) of the deployment's model server, where the gateway may call it itself."""
        url = (deployment.get("endpoint") or {}).get("url")
        if deployment.get("target") != "local" or not isinstance(url, str):
            return None
        key = (str(deployment["id"]), url)
        token = self._tokens.get(key)
        if token is None:
            token = self._tokens[key] = model_server_token(self._secret, *key)
        return url, token

    async def predict(self, url: str, token: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of `POST {url}/predict`; `NotSent` or `Lost` when no answer came."""
        headers = b"authorization: Bearer %s\r\ncontent-type: application/json\r\n" % token.encode()
        try:
            status, content = await self._pool.post(url, "/predict", body, headers)
        except ConnectFailed as exc:
            raise NotSent(str(exc)) from exc
        except AnswerLost as exc:
            raise Lost(str(exc)) from exc
        if status == 401:
            raise NotSent("the server at this address refused the deployment's token")
        return status, content

    async def aclose(self) -> None:
        await self._pool.aclose()


@asynccontextmanager
async def open_model_servers(settings: GatewaySettings) -> AsyncIterator[ModelServers | None]:
    """The data plane's client, or None (predict goes through the deployer) without the shared secret."""
    if settings.model_server_secret is None:
        yield None
        return
    servers = ModelServers(
        settings.model_server_secret.get_secret_value(),
        timeout_s=settings.upstream_timeout_s,
        connect_timeout_s=settings.upstream_connect_timeout_s,
    )
    try:
        yield servers
    finally:
        await servers.aclose()
