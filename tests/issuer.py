"""A signing key and its JWKS on a loopback port: access tokens for services tested without the auth service.

The tokens are made by the auth service's own code (`access_claims`, `sign`), so a service under test verifies
them exactly as it verifies the real auth service's (HUBPULSE_AUTH_URL = `issuer.url`)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from hubpulse_auth.service import AccessGrant, Role, access_claims, new_signing_key, sign


class TokenIssuer:
    def __init__(self, issuer: str = "hubpulse-auth", audience: str = "hubpulse-api") -> None:
        self.key = new_signing_key()
        self.issuer, self.audience = issuer, audience
        jwks = json.dumps({"keys": [self.key.as_dict(private=False)]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if self.path == "/.well-known/jwks.json" else 404)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(jwks)

            def log_message(self, *args: object) -> None:
                return None

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def token(self, user_id: str, org_id: str, role: Role = "member", ttl_s: int = 600) -> str:
        grant = AccessGrant(user_id, org_id, role, None, "00000000-0000-0000-0000-000000000000")
        claims: dict[str, Any] = access_claims(grant, issuer=self.issuer, audience=self.audience, ttl_s=ttl_s)
        return sign(claims, self.key)

    def headers(self, user_id: str, org_id: str, role: Role = "member", ttl_s: int = 600) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(user_id, org_id, role, ttl_s)}"}

    def close(self) -> None:
        self._server.shutdown()
