"""Sign in with Hugging Face: OpenID Connect authorization code flow with PKCE (authlib), id token checked
with joserfc against the provider's JWKS. The provider is found through `{hf_issuer}/.well-known/openid-configuration`.
"""

from __future__ import annotations

from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

# authlib's client runs on httpx2 when installed (else httpx); catch the errors of the one it uses.
from authlib.integrations.httpx_client._compat import httpx2 as oauth_http
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from hubpulse_auth.errors import SignInFailed
from hubpulse_auth.settings import AuthSettings
from hubpulse_common.http import Unavailable

SCOPE = "openid profile email"


class HfSignIn:
    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._metadata: dict[str, Any] | None = None

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self._settings.hf_client_id,
            client_secret=self._settings.hf_client_secret.get_secret_value() or None,
            scope=SCOPE,
            redirect_uri=self._settings.hf_redirect_uri,
            code_challenge_method="S256",
            timeout=self._settings.dependency_timeout_s,
        )

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self._settings.hf_issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                async with httpx.AsyncClient(timeout=self._settings.dependency_timeout_s) as client:
                    response = await client.get(url)
                    response.raise_for_status()
            except httpx.HTTPError as exc:
                raise Unavailable(f"Hugging Face sign-in is unavailable ({type(exc).__name__})") from None
            self._metadata = response.json()
        return self._metadata

    async def authorize_url(self, state: str, code_verifier: str, nonce: str) -> str:
        meta = await self.metadata()
        async with self._client() as client:
            url, _ = client.create_authorization_url(
                meta["authorization_endpoint"], state=state, code_verifier=code_verifier, nonce=nonce
            )
        return str(url)

    async def identity(self, code: str, code_verifier: str, nonce: str) -> dict[str, Any]:
        """The verified id-token claims for an authorization code."""
        meta = await self.metadata()
        try:
            async with self._client() as client:
                token = await client.fetch_token(meta["token_endpoint"], code=code, code_verifier=code_verifier)
                jwks = (await client.get(meta["jwks_uri"])).json()
        # OAuthError: the token endpoint's own refusal (400 {"error": "invalid_grant", ...}: a code expired, reused
        # or forged; invalid_client), which authlib raises from the body
        except (OAuthError, oauth_http.HTTPError, ValueError) as exc:
            raise SignInFailed(f"Hugging Face refused the sign-in ({exc})") from None
        try:
            decoded = jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256", "ES256"])
            jwt.JWTClaimsRegistry(
                leeway=30,
                iss={"essential": True, "value": meta["issuer"]},
                aud={"essential": True, "value": self._settings.hf_client_id},
                nonce={"essential": True, "value": nonce},
                sub={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, KeyError, ValueError) as exc:
            raise SignInFailed(f"invalid id token from Hugging Face ({exc})") from None
        claims: dict[str, Any] = decoded.claims
        return claims


def new_flow() -> tuple[str, str, str]:
    """(state, PKCE code verifier, nonce)."""
    return generate_token(32), generate_token(64), generate_token(32)
