"""Download exactly the files a runtime loads from a Hub repo (never pickled weights, never other formats)."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, snapshot_download

from hubpulse_deployer.runtime import plan

# huggingface_hub's `token`: a string is sent, False sends none, None falls back to HF_TOKEN / the saved login
HubToken = str | bool | None


def fetch(
    model_id: str,
    revision: str,
    task: str,
    *,
    endpoint: str | None = None,
    token: HubToken = None,
    cache_dir: Path | None = None,
) -> str:
    """The local folder holding what the chosen runtime needs. Raises `Refused` (no runtime serves the repo) and
    huggingface_hub's errors (unknown repo or revision, no access, Hub down)."""
    info = HfApi(endpoint=endpoint, token=token).model_info(model_id, revision=None if revision == "main" else revision)
    # the default branch is asked without a revision: every Hub (and the replay Hub) serves that route
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
