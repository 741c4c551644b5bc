"""Reading users' models on the Hub: whose token, which repos, and exactly which files (see `runtime.plan`).

The platform's token reads public, ungated repos only: a user who deploys a private or gated repo gives their own
Hub token (`config.secrets.HF_TOKEN`), which is also what the remote targets download with. So the platform's
access never serves a repo its user cannot read (a confused deputy).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import HfApi, ModelInfo, snapshot_download

from hubpulse_deployer.runtime import Refused, plan
from hubpulse_deployer.schemas import DeploymentConfig

# huggingface_hub's `token`: a string is sent, False sends none, None falls back to HF_TOKEN / the saved login
HubToken = str | bool | None
# the secret a deployment's config carries the user's own Hub token in (remote targets get it as HF_TOKEN too)
HUB_LOGIN_VARIABLE = "HF_TOKEN"


def user_token(config: DeploymentConfig) -> str | None:
    return config.secrets.get(HUB_LOGIN_VARIABLE) or None


def require_public(info: ModelInfo) -> None:
    """Refuse a private or gated repo read with the platform's token."""
    kind = "private" if info.private else f"gated ({info.gated})" if info.gated else None
    if kind is not None:
        raise Refused(
            f"{info.id} is {kind}: the platform's Hub token deploys only public, ungated models; deploy it with "
            f"your own Hub token as config.secrets.{HUB_LOGIN_VARIABLE}"
        )


def _bytes_of(info: ModelInfo, files: Sequence[str]) -> int | None:
    """The files' total size, or the whole repo's where the Hub gave no size for one of them (an upper bound)."""
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    known = [sizes[f] for f in files if sizes.get(f) is not None]
    if files and len(known) == len(files):
        return sum(s for s in known if s is not None)
    return info.used_storage


def _names(info: ModelInfo) -> list[str]:
    return [s.rfilename for s in info.siblings or []]


def download_bytes(info: ModelInfo, task: str) -> int | None:
    """What a deployment of the repo downloads: the planned files, or the whole repo where the plan fails or the
    Hub gave no file sizes (an upper bound)."""
    try:
        files: Sequence[str] = plan(task, _names(info)).files
    except Refused:
        files = _names(info)
    return _bytes_of(info, files)


def too_large(info: ModelInfo, task: str, limit: int) -> int | None:
    """The planned download's size when it is over `limit`; else None, and None for a repo the runtime would not
    load: nothing of it is ever downloaded, and the plan's refusal (`deployability`; a deployment fails with it)
    says more than the size of the whole repo."""
    try:
        files = plan(task, _names(info)).files
    except Refused:
        return None
    size = _bytes_of(info, files)
    return size if size is not None and size > limit else None


def model_info(api: HfApi, model_id: str, revision: str, token: HubToken) -> ModelInfo:
    # the default branch is asked without a revision: every Hub (and the replay Hub) serves that route
    return api.model_info(model_id, revision=None if revision == "main" else revision, token=token, files_metadata=True)


def fetch(
    model_id: str,
    revision: str,
    task: str,
    *,
    endpoint: str | None = None,
    token: HubToken = None,
    public_only: bool = False,
    cache_dir: Path | None = None,
) -> str:
    """The local folder holding what the chosen runtime needs. Raises `Refused` (no runtime serves the repo, or
    a non-public repo with `public_only`) and huggingface_hub's errors (unknown repo or revision, no access, Hub
    down)."""
    info = model_info(HfApi(endpoint=endpoint), model_id, revision, token)
    if public_only:
        require_public(info)
    chosen = plan(task, [s.rfilename for s in info.siblings or []])
    path: str = snapshot_download(
        model_id,
        revision=info.sha or revision,
        endpoint=endpoint,
        token=token,
        cache_dir=cache_dir,
        # exact repo paths: fnmatch patterns that match only themselves for Hub file names
        allow_patterns=list(chosen.files),
    )
    return path
