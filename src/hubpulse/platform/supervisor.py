"""Start, watch and stop the platform's processes (`hubpulse up`).

Order: stores (in parallel) -> database and S3 state -> replay Hub (demo) -> services (in parallel).
A child that exits unexpectedly is restarted with exponential backoff and the restart is logged.
Stop is the reverse order: services drain first, stores last. Children die with us even on SIGKILL
(PR_SET_PDEATHSIG), so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hubpulse.platform.layout import (
    PlatformConfig,
    hub_spec,
    service_environment,
    service_specs,
    store_specs,
)
from hubpulse.platform.stores import ProcessSpec, create_database, die_with_parent, port_open, terminate
from hubpulse_common.errors import ConfigError
from hubpulse_common.logging import get_logger
from hubpulse_common.processes import log_tail

log = get_logger("hubpulse.up")

RESTART_BACKOFF_MAX_S = 10.0
HEALTHY_RESET_S = 60.0  # a child up this long starts its backoff afresh


@dataclass
class Child:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes] | None = None
    state: str = "pending"  # pending, starting, ready, unhealthy, restarting, stopped, failed
    restarts: int = 0
    started_at: float = 0.0
    detail: str = ""
    backoff_s: float = 1.0
    restart_at: float | None = None
    history: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class Supervisor:
    def __init__(self, config: PlatformConfig, environ: dict[str, str] | None = None) -> None:
        self.config = config
        environ = dict(os.environ if environ is None else environ)
        stores = store_specs(config, environ)
        env = service_environment(config, stores, environ)
        self.env = env
        self.stores = [Child(s) for s in stores]
        self.hub = Child(hub_spec(config)) if config.demo else None
        self.services = [Child(s) for s in service_specs(config, env)]
        self.stopping = False
        self._http = httpx.AsyncClient(timeout=2.0)

    @property
    def children(self) -> list[Child]:
        return [*self.stores, *([self.hub] if self.hub else []), *self.services]

    # ---- lifecycle ----------------------------------------------------------------------------

    def _check_ports(self) -> None:
        taken = [c.spec for c in self.children if port_open(c.spec.port)]
        if taken:
            names = ", ".join(f"{s.name} ({s.port})" for s in taken)
            raise ConfigError(f"--port {self.config.port}: ports already in use: {names}; is hubpulse already up?")

    def _spawn(self, child: Child) -> None:
        spec = child.spec
        if spec.prepare is not None:
            spec.prepare()
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.config.log_dir / f"{spec.name}.log", "ab") as log_file:
            child.proc = subprocess.Popen(
                spec.argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **spec.env},
                user=spec.user,
                cwd=spec.cwd,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        child.state = "starting"
        child.started_at = time.monotonic()

    async def _wait_listening(self, child: Child, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if port_open(child.spec.port):
                return
            if child.proc is not None and child.proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        tail = self._log_tail(child)
        raise ConfigError(f"{child.spec.name} did not start (see {self.config.log_dir / child.spec.name}.log): {tail}")

    def _log_tail(self, child: Child, lines: int = 3) -> str:
        return log_tail(self.config.log_dir / f"{child.spec.name}.log", lines=lines)

    async def start(self) -> None:
        self._check_ports()
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        for child in self.stores:
            self._spawn(child)
        await asyncio.gather(*(self._wait_listening(c, 60) for c in self.stores))
        await self._prepare_stores()
        for child in self.stores:
            child.state = "ready"
        if self.hub is not None:
            self._spawn(self.hub)
            await self._wait_listening(self.hub, 120)
            self.hub.state = "ready"
        for child in self.services:
            self._spawn(child)
        self._write_state()

    async def _prepare_stores(self) -> None:
        names = {c.spec.name: c.spec for c in self.stores}
        if "postgres" in names:
            url = names["postgres"].url
            admin = url.rsplit("/", 1)[0] + "/postgres"
            await create_database(admin, url.rsplit("/", 1)[1])
        if "s3" in names:
            await self._restore_s3(names["s3"])

    async def _restore_s3(self, spec: ProcessSpec) -> None:
        """moto keeps S3 in memory: replay the writes recorded by earlier runs, then record again."""
        if await asyncio.to_thread(_keep_recorded_writes, Path(spec.env["MOTO_RECORDER_FILEPATH"])):
            await self._http.post(f"{spec.url}/moto-api/recorder/replay-recording", timeout=120)
        await self._http.post(f"{spec.url}/moto-api/recorder/start-recording")

    async def stop(self) -> None:
        """Services first (they drain and commit), then the Hub, then the stores."""
        self.stopping = True
        groups = [self.services, [self.hub] if self.hub else [], self.stores]
        for group in groups:
            await asyncio.gather(*(asyncio.to_thread(self._stop_child, c) for c in group))
        await self._http.aclose()
        with contextlib.suppress(FileNotFoundError):
            self.config.state_file.unlink()

    def _stop_child(self, child: Child) -> None:
        if child.proc is not None:
            terminate(child.proc, child.spec.name, timeout_s=20)
        child.state = "stopped"

    # ---- watching -----------------------------------------------------------------------------

    async def watch_once(self) -> None:
        """One pass: restart what died (with backoff), probe readiness of the rest."""
        now = time.monotonic()
        for child in self.children:
            proc = child.proc
            if proc is None or self.stopping:
                continue
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    child.restarts += 1
                    self._spawn(child)
                    log.warning("process.restarted", name=child.spec.name, pid=child.pid, restarts=child.restarts)
                continue
            code = proc.poll()
            if code is not None:
                if now - child.started_at > HEALTHY_RESET_S:
                    child.backoff_s = 1.0
                child.state = "restarting"
                child.detail = f"exited {code}: {self._log_tail(child, 1)}"
                child.restart_at = now + child.backoff_s
                log.error("process.exited", name=child.spec.name, code=code, restart_in_s=child.backoff_s)
                child.backoff_s = min(child.backoff_s * 2, RESTART_BACKOFF_MAX_S)
        await asyncio.gather(*(self._probe(c) for c in self.services if c.restart_at is None and c.proc))
        self._write_state()

    async def _probe(self, child: Child) -> None:
        try:
            response = await self._http.get(f"{child.spec.url}{child.spec.ready_path}")
            ready = response.status_code == 200
            child.detail = "" if ready else _not_ready_detail(response)
        except httpx.HTTPError as exc:
            ready = False
            child.detail = type(exc).__name__
        if ready and child.state != "ready":
            log.info("process.ready", name=child.spec.name, pid=child.pid)
        child.state = "ready" if ready else ("starting" if child.state == "starting" else "unhealthy")

    def all_ready(self) -> bool:
        return all(c.state == "ready" for c in self.children)

    def _write_state(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "port": self.config.port,
            "processes": [
                {
                    "name": c.spec.name,
                    "kind": c.spec.kind,
                    "url": c.spec.url,
                    "port": c.spec.port,
                    "pid": c.pid,
                    "ready_path": c.spec.ready_path,
                    "restarts": c.restarts,
                }
                for c in self.children
            ],
        }
        tmp = self.config.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.config.state_file)


def _not_ready_detail(response: httpx.Response) -> str:
    try:
        checks = response.json().get("checks", {})
    except ValueError:
        return f"HTTP {response.status_code}"
    return ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")[:200]


def _keep_recorded_writes(recording: Path) -> int:
    """Drop recorded reads (registry polling would grow the file without end); return the writes kept."""
    if not recording.exists():
        return 0
    writes = [
        line
        for line in recording.read_text().splitlines()
        if line and json.loads(line).get("method") in ("PUT", "POST", "DELETE")
    ]
    recording.write_text("".join(f"{w}\n" for w in writes))
    return len(writes)
