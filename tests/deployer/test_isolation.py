"""Two users, two organisations: nobody reads or changes another user's deployments, through the gateway or by
calling the deployer directly (security audit H7: a direct call with no credentials listed and deleted them)."""

from __future__ import annotations

from typing import Any

import httpx

from deployer.conftest import DeployStack

MODEL = "hubpulse-demo/tiny-text-classifier"
PASSWORD = "correct horse battery"


async def _login(stack: DeployStack, email: str, **extra: Any) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as client:
        await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
        login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD, **extra})
        assert login.status_code == 200, login.text
    return {"authorization": f"Bearer {login.json()['access_token']}"}


async def test_another_user_cannot_see_or_touch_a_deployment(deploy_stack: DeployStack) -> None:
    owner = deploy_stack.headers
    stranger = await _login(deploy_stack, "stranger@example.com")
    async with httpx.AsyncClient(base_url=deploy_stack.gateway, timeout=30) as client:
        # kubernetes without a kubeconfig renders and waits: a deployment that starts no process
        created = await client.post("/v1/deployments", json={"model_id": MODEL, "target": "kubernetes"}, headers=owner)
        assert created.status_code == 202, created.text
        dep = created.json()["id"]
        try:
            attempts = [
                ("GET", f"/v1/deployments/{dep}", None),
                ("GET", f"/v1/deployments/{dep}/manifests", None),
                ("PATCH", f"/v1/deployments/{dep}", {"config": {"env": {"A": "b"}}}),
                ("POST", f"/v1/deployments/{dep}/rollback", {}),
                ("POST", f"/v1/deployments/{dep}/predict", {"inputs": "hello"}),
                ("DELETE", f"/v1/deployments/{dep}", None),
            ]
            for method, path, body in attempts:
                response = await client.request(method, path, json=body, headers=stranger)
                assert response.status_code == 404, (method, path, response.text)
                assert response.json()["error"]["code"] == "not_found"
            listed = (await client.get("/v1/deployments", headers=stranger)).json()["items"]
            assert dep not in [d["id"] for d in listed]
            still = await client.get(f"/v1/deployments/{dep}", headers=owner)
            assert still.status_code == 200
            assert still.json()["status"] != "deleted"
        finally:
            await client.delete(f"/v1/deployments/{dep}", headers=owner)


async def test_the_deployer_believes_no_identity_header(deploy_stack: DeployStack) -> None:
    stranger = await _login(deploy_stack, "direct@example.com")
    async with httpx.AsyncClient(base_url=deploy_stack.gateway, timeout=30) as client:
        created = await client.post(
            "/v1/deployments", json={"model_id": MODEL, "target": "kubernetes"}, headers=deploy_stack.headers
        )
        assert created.status_code == 202, created.text
    dep = created.json()["id"]
    forged = {"x-hubpulse-user": deploy_stack.user_id, "x-hubpulse-org": "any", "x-hubpulse-role": "admin"}
    async with httpx.AsyncClient(base_url=deploy_stack.deployer, timeout=30) as direct:
        try:
            for headers in ({}, forged, {"authorization": "Bearer forged", **forged}):
                routes = (("GET", "/deployments"), ("GET", f"/deployments/{dep}"), ("DELETE", f"/deployments/{dep}"))
                for method, path in routes:
                    response = await direct.request(method, path, headers=headers)
                    assert response.status_code == 401, (method, path, headers, response.text)
            # a genuine token of someone else: still not theirs
            assert (await direct.get(f"/deployments/{dep}", headers=stranger)).status_code == 404
            assert (await direct.delete(f"/deployments/{dep}", headers=stranger)).status_code == 404
            assert dep not in [d["id"] for d in (await direct.get("/deployments", headers=stranger)).json()["items"]]
            assert (await direct.get(f"/deployments/{dep}", headers=deploy_stack.headers)).status_code == 200
        finally:
            await direct.delete(f"/deployments/{dep}", headers=deploy_stack.headers)


async def test_a_viewer_reads_but_cannot_change_deployments(deploy_stack: DeployStack) -> None:
    admin = deploy_stack.headers
    async with httpx.AsyncClient(base_url=deploy_stack.gateway, timeout=30) as client:
        org = (await client.get("/v1/me", headers=admin)).json()["org_id"]
        await _login(deploy_stack, "watcher@example.com")
        put = await client.put(
            "/v1/org/members", json={"email": "watcher@example.com", "role": "viewer"}, headers=admin
        )
        assert put.status_code == 200, put.text
        viewer = await _login(deploy_stack, "watcher@example.com", org_id=org)
        assert (await client.get("/v1/deployments", headers=viewer)).status_code == 200
        refused = await client.post("/v1/deployments", json={"model_id": MODEL, "target": "kubernetes"}, headers=viewer)
        assert refused.status_code == 403, refused.text
