"""The web app's security headers (security audit L1: none were sent, so its deploy and delete buttons could be
framed by another site)."""

from __future__ import annotations

import httpx

from gateway.gateway_process import Gateway


def test_the_web_app_cannot_be_framed_and_runs_only_its_own_code(gateway: Gateway) -> None:
    for path in ("/", "/static/js/app.js", "/v1/models?limit=1"):
        response = httpx.get(gateway.url + path, timeout=30)
        assert response.status_code == 200, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp
    # the OpenAPI UI bootstraps with an inline script: it keeps every header but the script policy
    docs = httpx.get(gateway.url + "/docs", timeout=30)
    assert docs.status_code == 200
    assert docs.headers["x-frame-options"] == "DENY"
    assert "content-security-policy" not in docs.headers
