"""Running the replay Hub: in the foreground (the CLI) or in a background thread (tests, `hubpulse up`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from hubpulse_common.processes import free_port


@dataclass
class RunningHub:
    server: uvicorn.Server
    thread: threading.Thread
    url: str

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int | None = None, startup_timeout: float = 30.0
) -> RunningHub:
    """Starts uvicorn in a daemon thread and waits until it accepts connections."""
    port = port or free_port(host)
    # date_header off: the app sends the replayed day as Date (see hub.app.ReplayDateMiddleware)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", date_header=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"replay-hub-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"replay Hub did not start on {host}:{port}")
        time.sleep(0.02)
    return RunningHub(server=server, thread=thread, url=f"http://{host}:{port}")


def serve(app: FastAPI, host: str, port: int) -> None:
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, date_header=False)
