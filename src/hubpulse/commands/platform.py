"""`hubpulse up` and `hubpulse status`: run the whole platform locally, and check on it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from hubpulse.platform.demo import demo_step
from hubpulse.platform.layout import PlatformConfig
from hubpulse.platform.stores import port_open
from hubpulse.platform.supervisor import Supervisor
from hubpulse_common.errors import UserFacingError
from hubpulse_common.logging import configure_logging

console = Console()

DataDir = Annotated[
    Path, typer.Option("--data-dir", envvar="HUBPULSE_DATA_DIR", help="Where the platform keeps its data and logs.")
]

_STATE_STYLE = {"ready": "green", "starting": "yellow", "restarting": "red", "unhealthy": "red", "stopped": "dim"}


def _table(sup: Supervisor, started: float) -> Table:
    table = Table(title=f"hubpulse  ({time.monotonic() - started:.0f}s)  Ctrl-C stops everything", expand=False)
    for column in ("process", "state", "url", "pid", "restarts", "detail"):
        table.add_column(column)
    for child in sup.children:
        style = _STATE_STYLE.get(child.state, "")
        table.add_row(
            child.spec.name,
            f"[{style}]{child.state}[/]",
            child.spec.url,
            str(child.pid or ""),
            str(child.restarts),
            child.detail[:60],
        )
    return table


async def _up(config: PlatformConfig) -> None:
    sup = Supervisor(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    announced = False
    demo_done = False
    http = httpx.AsyncClient(timeout=5.0)
    try:
        with console.status("starting stores..."):
            await sup.start()
        with Live(
            _table(sup, started),
            console=console,
            refresh_per_second=2,
            transient=False,
            auto_refresh=console.is_terminal,
        ) as live:
            while not stop.is_set():
                await sup.watch_once()
                live.update(_table(sup, started))
                if not announced and sup.all_ready():
                    announced = True
                    _announce(sup, time.monotonic() - started)
                if announced and sup.hub is not None:
                    demo_done = await _demo_step(sup, http, demo_done)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        console.print("stopping...")
        await http.aclose()
        await sup.stop()
        console.print("stopped; no process left running.")


async def _demo_step(sup: Supervisor, http: httpx.AsyncClient, loaded: bool) -> bool:
    """Feed the demo's history day by day, then follow the demo clock; True once the history is ingested."""
    assert sup.hub is not None
    ingestor = next(c for c in sup.services if c.spec.name == "ingestor")
    try:
        progress = await demo_step(http, sup.hub.spec.url, ingestor.spec.url)
    except httpx.HTTPError:
        return loaded  # a restart in progress; try on the next pass
    history = sup.config.days
    if not loaded and progress.done:
        console.print(f"demo history loaded: {history} days through the pipeline")
    loaded = loaded or progress.done
    clock = f", a new day every {sup.config.day_seconds:g} s" if sup.config.day_seconds else ""
    sup.hub.detail = f"day {progress.day + 1}" + (f" ({history} of history{clock})" if loaded else f"/{history}")
    return loaded


def _announce(sup: Supervisor, seconds: float) -> None:
    gateway = next(c for c in sup.services if c.spec.name == "gateway")
    console.print(f"[bold green]hubpulse is up[/] in {seconds:.1f}s")
    console.print(f"  web app      {gateway.spec.url}/")
    console.print(f"  API docs     {gateway.spec.url}/docs")
    if sup.hub is not None:
        console.print(f"  replay Hub   {sup.hub.spec.url}  (HF_ENDPOINT)")
    console.print(f"  logs         {sup.config.log_dir}")


def up(
    demo: Annotated[bool, typer.Option("--demo", help="Serve a synthetic replay Hub instead of HF_ENDPOINT.")] = False,
    models: Annotated[int, typer.Option(min=1, help="Models in the demo Hub.")] = 2000,
    days: Annotated[int, typer.Option(min=1, help="Days of demo history.")] = 30,
    day_seconds: Annotated[
        float, typer.Option(min=0, max=86_400, help="After the demo history, a new Hub day every N seconds (0: none).")
    ] = 60.0,
    port: Annotated[int, typer.Option(min=1024, max=65000, help="Gateway port; the others follow it.")] = 8000,
    data_dir: DataDir = Path(".hubpulse"),
) -> None:
    """Start embedded PostgreSQL, the broker, Mongo and S3 stand-ins, and every service as its own process."""
    configure_logging("hubpulse", "INFO", "console")
    config = PlatformConfig(
        data_dir=data_dir.resolve(), port=port, demo=demo, models=models, days=days, day_seconds=day_seconds
    )
    asyncio.run(_up(config))


def _check(process: dict[str, object], client: httpx.Client) -> tuple[bool, str]:
    url, ready_path, port = str(process["url"]), process.get("ready_path"), int(str(process["port"]))
    if not ready_path:
        return port_open(port), "listening" if port_open(port) else "not listening"
    try:
        response = client.get(f"{url}{ready_path}")
    except httpx.HTTPError as exc:
        return False, type(exc).__name__
    if response.status_code == 200:
        return True, "ready"
    checks = response.json().get("checks", {}) if "json" in response.headers.get("content-type", "") else {}
    return False, ", ".join(f"{k} {v}" for k, v in checks.items() if v != "ok") or f"HTTP {response.status_code}"


def status(data_dir: DataDir = Path(".hubpulse")) -> None:
    """Health of every service and backing store, one line each; exits 1 if any is unhealthy."""
    state_file = data_dir / "state.json"
    if not state_file.exists():
        raise UserFacingError(f"hubpulse is not up here (no {state_file}); start it with `hubpulse up`")
    try:
        state = json.loads(state_file.read_text())
        processes = state["processes"]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise UserFacingError(
            f"{state_file} is unreadable ({type(exc).__name__}: {exc}); stop any hubpulse left running and "
            "start it again with `hubpulse up`"
        ) from None
    healthy = True
    with httpx.Client(timeout=3.0) as client:
        for process in processes:
            ok, detail = _check(process, client)
            healthy &= ok
            mark = "[green]ok  [/]" if ok else "[red]DOWN[/]"
            console.print(
                f"{mark} {process['name']:<9} {process['url']:<28} pid {process['pid']}  {detail}", highlight=False
            )
    raise typer.Exit(0 if healthy else 1)


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(status)
