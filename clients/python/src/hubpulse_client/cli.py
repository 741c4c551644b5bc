"""`hubpulse-client`: search, watch, deploy and predict from a terminal (a thin layer over HubpulseClient).

Credentials and the server come from options or HUBPULSE_URL, HUBPULSE_TOKEN / HUBPULSE_API_KEY.
"""

from __future__ import annotations

import itertools
import json
from typing import Annotated, Any

import typer

from hubpulse_client.client import HubpulseClient
from hubpulse_client.errors import HubpulseError

app = typer.Typer(help="The hubpulse API from a terminal.", no_args_is_help=True, add_completion=False)
state: dict[str, Any] = {}

Url = Annotated[str, typer.Option("--url", envvar="HUBPULSE_URL", help="the gateway's base URL")]
Token = Annotated[str | None, typer.Option("--token", envvar="HUBPULSE_TOKEN", help="an access token")]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="HUBPULSE_API_KEY", help="an API key (hpk_...)")]


@app.callback()
def connect(url: Url = "http://127.0.0.1:8000", token: Token = None, api_key: ApiKey = None) -> None:
    state.update(url=url, token=token, api_key=api_key)


def _client() -> HubpulseClient:
    return HubpulseClient(state["url"], token=state["token"], api_key=state["api_key"])


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@app.command()
def search(
    q: Annotated[str | None, typer.Option(help="words matched in id, author and tags")] = None,
    task: Annotated[str | None, typer.Option(help="pipeline tag")] = None,
    library: Annotated[str | None, typer.Option(help="library name")] = None,
    min_downloads: Annotated[int | None, typer.Option(min=0)] = None,
    sort: Annotated[str | None, typer.Option(help="trend, downloads, likes, ...")] = None,
    limit: Annotated[int, typer.Option(min=1, help="models to print at most")] = 20,
) -> None:
    """Models matching the filters, one per line: id, trend probability, downloads."""
    filters = {"q": q, "task": task, "library": library, "min_downloads": min_downloads, "sort": sort}
    with _client() as client:
        found = client.search_models(**{k: v for k, v in filters.items() if v is not None}, limit=min(limit, 100))
        for model in itertools.islice(found, limit):
            probability = "-" if model.probability is None else f"{model.probability:.3f}"
            typer.echo(f"{model.model_id}\t{probability}\t{model.downloads}")


@app.command()
def watch(
    kind: Annotated[str, typer.Argument(help="model | author | task | library | search")],
    target: Annotated[str, typer.Argument(help="a model id, author, task, library, or a search's query string")],
    threshold: Annotated[float | None, typer.Option(min=0, max=1)] = None,
    condition: Annotated[list[str] | None, typer.Option(help="threshold, picks, surge, new_model (repeat)")] = None,
    webhook: Annotated[str | None, typer.Option(help="POST signed alerts here")] = None,
    email: Annotated[str | None, typer.Option(help="e-mail alerts here")] = None,
    digest: Annotated[bool, typer.Option(help="one message a day instead of one per alert")] = False,
) -> None:
    """Watch something; prints the watch (with the webhook signing secret)."""
    channels = {"webhook": webhook, "email": email, "digest": digest}
    with _client() as client:
        chosen = {k: v for k, v in channels.items() if v not in (None, False)}
        created = client.create_watch(kind, target, threshold=threshold, conditions=condition or None, channels=chosen)
    _print(created.model_dump(mode="json"))


@app.command()
def deploy(
    model_id: Annotated[str, typer.Argument(help="e.g. org/name")],
    target: Annotated[str, typer.Option(help="local, hf-space, aws-lambda, kubernetes")] = "local",
    wait: Annotated[bool, typer.Option(help="wait until it runs")] = True,
    timeout: Annotated[float, typer.Option(min=1, help="seconds to wait")] = 300,
) -> None:
    """Deploy a model; prints the deployment (once running, with --wait)."""
    with _client() as client:
        created = client.deploy(model_id, target=target)
        _print(client.wait_until_running(str(created["id"]), timeout) if wait else created)


@app.command()
def predict(
    deployment_id: Annotated[str, typer.Argument()],
    inputs: Annotated[list[str], typer.Argument(help="one input, or several for a batch")],
    compare: Annotated[
        list[str] | None,
        typer.Option(help="sentence-similarity: compare the input with this sentence (repeat for each)"),
    ] = None,
) -> None:
    """Run a deployed model; prints its output(s). For a sentence-similarity model, give the source sentence and
    the sentences to compare it with: `predict ID "a man eats" --compare "a man eats bread" --compare "a horse"`."""
    if compare is not None and len(inputs) != 1:
        raise typer.BadParameter("--compare compares one source sentence: give exactly one input", param_hint="INPUTS")
    with _client() as client:
        if compare is not None:
            _print(client.predict(deployment_id, {"source_sentence": inputs[0], "sentences": compare}))
        elif len(inputs) == 1:
            _print(client.predict(deployment_id, inputs[0]))
        else:
            _print(client.predict_batch(deployment_id, inputs))


def main() -> None:
    try:
        app()
    except HubpulseError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        raise SystemExit(1) from None
