"""Spaces, as `huggingface_hub.HfApi` drives them: create/delete repo, commit files, secrets, hardware, runtime.

The replay Hub runs no Space code. A Space's runtime stage follows what a real Space goes through:
NO_APP_FILE until its SDK's app file is committed, BUILDING for `space_build_seconds` after each commit,
then RUNNING. Write routes need a bearer token, as on huggingface.co.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass, field
from typing import Annotated

import orjson
import yaml
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from hubpulse.hub.responses import Refused, hub_error, json_response

router = APIRouter()
_APP_FILES = {"gradio": "app.py", "streamlit": "app.py", "docker": "Dockerfile", "static": "index.html"}
_HARDWARE = ("cpu-basic", "cpu-upgrade", "t4-small", "t4-medium", "a10g-small", "a10g-large", "a100-large")
DEFAULT_BUILD_SECONDS = 1.0


@dataclass
class Space:
    repo_id: str
    sdk: str
    hardware: str
    secrets: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    sha: str = "0" * 40
    committed_at: float | None = None

    def stage(self, build_seconds: float) -> str:
        if _APP_FILES[self.sdk] not in self.files or self.committed_at is None:
            return "NO_APP_FILE"
        return "BUILDING" if time.monotonic() - self.committed_at < build_seconds else "RUNNING"


def _spaces(request: Request) -> dict[str, Space]:
    spaces: dict[str, Space] | None = getattr(request.app.state, "spaces", None)
    if spaces is None:
        spaces = request.app.state.spaces = {}
    return spaces


def _build_seconds(request: Request) -> float:
    return float(getattr(request.app.state, "space_build_seconds", DEFAULT_BUILD_SECONDS))


def _authorized(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


async def _json(request: Request) -> dict[str, object] | None:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _find(request: Request, repo_id: str) -> Space:
    if not _authorized(request):
        raise Refused(hub_error(401, "Invalid credentials in Authorization header"))
    space = _spaces(request).get(repo_id)
    if space is None:
        raise Refused(hub_error(404, "Repository not found", "RepoNotFound"))
    return space


def _space(request: Request, namespace: str, name: str) -> Space:
    """The route's Space (a dependency): 401 without a token, 404 when there is none."""
    return _find(request, f"{namespace}/{name}")


FoundSpace = Annotated[Space, Depends(_space)]


def _repo_id(body: dict[str, object]) -> str | None:
    name, org = body.get("name"), body.get("organization")
    if not isinstance(name, str) or not name:
        return None
    return f"{org}/{name}" if isinstance(org, str) and org else f"user/{name}"


@router.post("/api/repos/create")
async def create_repo(request: Request) -> Response:
    if not _authorized(request):
        return hub_error(401, "Invalid credentials in Authorization header")
    body = await _json(request)
    repo_id = _repo_id(body) if body else None
    if body is None or repo_id is None:
        return hub_error(400, "name is required")
    if body.get("type") != "space":
        return hub_error(400, "this Hub creates Spaces only")
    sdk, hardware = str(body.get("sdk")), str(body.get("hardware") or "cpu-basic")
    if sdk not in _APP_FILES:
        return hub_error(400, f"Invalid sdk {sdk!r}; allowed: {', '.join(_APP_FILES)}")
    if hardware not in _HARDWARE:
        return hub_error(400, f"Invalid hardware {hardware!r}")
    url = f"{str(request.base_url).rstrip('/')}/spaces/{repo_id}"
    if repo_id in _spaces(request):
        # with the repo's url, which huggingface_hub's create_repo(exist_ok=True) returns from this 409's body
        message = "You already created this space repo"
        return json_response(
            {"error": message, "url": url}, 409, {"X-Error-Code": "RepoExists", "X-Error-Message": message}
        )
    secrets = body.get("secrets") or []
    space = Space(repo_id=repo_id, sdk=sdk, hardware=hardware)
    for item in secrets if isinstance(secrets, list) else []:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            space.secrets[item["key"]] = str(item.get("value", ""))
    _spaces(request)[repo_id] = space
    return json_response({"url": url, "name": repo_id, "id": repo_id})


@router.delete("/api/repos/delete")
async def delete_repo(request: Request) -> Response:
    body = await _json(request)
    repo_id = _repo_id(body) if body else None
    found = _find(request, repo_id or "")
    del _spaces(request)[found.repo_id]
    return Response(status_code=200)


@router.get("/api/spaces/{namespace}/{name}")
def space_info(request: Request, namespace: str, name: str, found: FoundSpace) -> Response:
    return json_response(
        {
            "id": found.repo_id,
            "sha": found.sha,
            "sdk": found.sdk,
            "siblings": [{"rfilename": p} for p in sorted(found.files)],
            "runtime": _runtime(found, _build_seconds(request)),
        }
    )


@router.post("/api/spaces/{namespace}/{name}/preupload/{revision}")
async def preupload(request: Request, namespace: str, name: str, revision: str, found: FoundSpace) -> Response:
    body = await _json(request) or {}
    files = body.get("files")
    modes = [
        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
        for f in (files if isinstance(files, list) else [])
        if isinstance(f, dict) and isinstance(f.get("path"), str)
    ]
    return json_response({"files": modes, "commitOid": found.sha})


@router.post("/api/spaces/{namespace}/{name}/commit/{revision}")
async def commit(request: Request, namespace: str, name: str, revision: str, found: FoundSpace) -> Response:
    changes: dict[str, bytes | None] = {}
    try:
        for line in (await request.body()).splitlines():
            if not line.strip():
                continue
            item = orjson.loads(line)
            value = item.get("value", {})
            if item.get("key") == "file":
                changes[value["path"]] = base64.b64decode(value["content"])
            elif item.get("key") == "deletedFile":
                changes[value["path"]] = None
            elif item.get("key") != "header":
                return hub_error(400, f"unsupported commit operation {item.get('key')!r} (regular files only)")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return hub_error(400, f"malformed commit payload: {exc}")
    for path, content in changes.items():
        if content is None:
            found.files.pop(path, None)
        else:
            found.files[path] = content
    digest = hashlib.sha1(found.sha.encode(), usedforsecurity=False)
    for path in sorted(found.files):
        digest.update(path.encode() + b"\0" + found.files[path])
    found.sha, found.committed_at = digest.hexdigest(), time.monotonic()
    base = str(request.base_url).rstrip("/")
    return json_response({"commitUrl": f"{base}/spaces/{found.repo_id}/commit/{found.sha}", "commitOid": found.sha})


async def _key_value(request: Request) -> tuple[str, str]:
    """A secret's or variable's `{"key": ..., "value": ...}` body."""
    body = await _json(request) or {}
    key = body.get("key")
    if not isinstance(key, str):
        raise Refused(hub_error(400, "key is required"))
    return key, str(body.get("value", ""))


@router.post("/api/spaces/{namespace}/{name}/secrets")
async def add_secret(request: Request, namespace: str, name: str, found: FoundSpace) -> Response:
    key, value = await _key_value(request)
    found.secrets[key] = value
    return Response(status_code=200)


@router.post("/api/spaces/{namespace}/{name}/hardware")
async def request_hardware(request: Request, namespace: str, name: str, found: FoundSpace) -> Response:
    body = await _json(request) or {}
    flavor = body.get("flavor")
    if flavor not in _HARDWARE:
        return hub_error(400, f"Invalid hardware {flavor!r}")
    found.hardware = str(flavor)
    return json_response(_runtime(found, _build_seconds(request)))


def _runtime(space: Space, build_seconds: float) -> dict[str, object]:
    return {
        "stage": space.stage(build_seconds),
        "hardware": {"current": space.hardware, "requested": space.hardware},
        "gcTimeout": None,
        "storage": None,
        "devMode": False,
        # the names only: the Hub never reads secrets back
        "secrets": sorted(space.secrets),
    }


@router.get("/api/spaces/{namespace}/{name}/runtime")
def runtime(request: Request, namespace: str, name: str, found: FoundSpace) -> Response:
    return json_response(_runtime(found, _build_seconds(request)))


@router.post("/api/spaces/{namespace}/{name}/variables")
async def add_variable(request: Request, namespace: str, name: str, found: FoundSpace) -> Response:
    key, value = await _key_value(request)
    found.variables[key] = value
    return json_response({k: {"value": v} for k, v in sorted(found.variables.items())})


@router.post("/api/validate-yaml")
async def validate_yaml(request: Request) -> Response:
    """The README metadata check `create_commit` runs before committing a README.md: YAML front matter that parses
    to a mapping is valid (the Hub also checks known keys; this Hub does not)."""
    body = await _json(request) or {}
    content = str(body.get("content", ""))
    _, _, rest = content.partition("---\n")
    front, found, _ = rest.partition("\n---")
    try:
        metadata = yaml.safe_load(front) if content.startswith("---\n") and found else {}
    except yaml.YAMLError as exc:
        return json_response({"errors": [{"message": f"Invalid YAML in README front matter: {exc}"}]}, 400)
    if metadata is not None and not isinstance(metadata, dict):
        return json_response({"errors": [{"message": "README front matter must be a mapping"}]}, 400)
    return json_response({"errors": [], "warnings": []})
