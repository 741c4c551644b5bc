"""Model repositories of the demo models: info, file tree and `resolve`, as `snapshot_download` calls them.

Only `hubpulse-demo/*` repos have files; the replayed models keep their stats-only answers in models.py.
Included before models.py so these literal paths win over `/api/models/{namespace}/{name}`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response

from hubpulse.hub.demo_models import AUTHOR, LIBRARY, BuiltRepo, DemoRepos, default_cache_dir
from hubpulse.hub.responses import hub_error, json_response

router = APIRouter()
_PREFIX = f"/api/models/{AUTHOR}/{{name}}"
# the date the demo models carry: fixed, so that repeated builds answer identically
_CREATED = "2025-01-01T00:00:00.000Z"


def demo_repos(request: Request) -> DemoRepos:
    repos: DemoRepos | None = getattr(request.app.state, "demo_repos", None)
    if repos is None:
        repos = request.app.state.demo_repos = DemoRepos(default_cache_dir())
    return repos


async def _repo(request: Request, name: str, revision: str = "main") -> BuiltRepo | Response:
    # the first request builds the model (seconds): keep it off the event loop
    built = await run_in_threadpool(demo_repos(request).get, f"{AUTHOR}/{name}")
    if built is None:
        return hub_error(404, "Repository not found", "RepoNotFound")
    if revision not in ("main", built.sha):
        return hub_error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
    return built


def _info(built: BuiltRepo) -> dict[str, object]:
    model = built.model
    return {
        "_id": built.sha[:24],
        "id": model.repo_id,
        "modelId": model.repo_id,
        "author": AUTHOR,
        "sha": built.sha,
        "private": False,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "library_name": LIBRARY,
        "pipeline_tag": model.pipeline_tag,
        "tags": [LIBRARY, model.pipeline_tag, AUTHOR],
        "createdAt": _CREATED,
        "lastModified": _CREATED,
        "siblings": [{"rfilename": f.path} for f in built.files],
        "usedStorage": sum(f.size for f in built.files),
    }


@router.get(_PREFIX)
async def model_info(request: Request, name: str) -> Response:
    built = await _repo(request, name)
    return built if isinstance(built, Response) else json_response(_info(built))


@router.get(_PREFIX + "/revision/{revision}")
async def model_info_at(request: Request, name: str, revision: str) -> Response:
    built = await _repo(request, name, revision)
    return built if isinstance(built, Response) else json_response(_info(built))


@router.get(_PREFIX + "/tree/{revision}")
async def tree(request: Request, name: str, revision: str) -> Response:
    built = await _repo(request, name, revision)
    if isinstance(built, Response):
        return built
    lfs = {
        f.path: {"oid": f.sha256, "size": f.size, "pointerSize": 134}
        for f in built.files
        if f.path.endswith(".safetensors")
    }
    entries = [
        {
            "type": "file",
            "path": f.path,
            "size": f.size,
            "oid": f.git_oid,
            # weights are LFS files on the Hub: their etag is the sha256 of the content
            **({"lfs": lfs[f.path]} if f.path in lfs else {}),
        }
        for f in built.files
    ]
    return json_response(entries)


@router.api_route(f"/{AUTHOR}/{{name}}/resolve/{{revision}}/{{path:path}}", methods=["GET", "HEAD"])
async def resolve(request: Request, name: str, revision: str, path: str) -> Response:
    built = await _repo(request, name, revision)
    if isinstance(built, Response):
        return built
    info = built.file(path)
    if info is None:
        return hub_error(404, "Entry not found", "EntryNotFound")
    etag = info.sha256 if path.endswith(".safetensors") else info.git_oid
    headers = {"ETag": f'"{etag}"', "X-Repo-Commit": built.sha, "Accept-Ranges": "bytes"}
    if request.method == "HEAD":
        return Response(headers={**headers, "Content-Length": str(info.size)})
    return FileResponse(built.root / info.path, headers=headers, media_type="application/octet-stream")
