"""For a program that starts processes of its own: a free port to give one, the tail of its log for an error."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's pick), for a child process to bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, *, lines: int = 3, chars: int = 400, sep: str = " | ") -> str:
    """The last `lines` non-blank lines of a log, joined by `sep`, at most `chars` characters ('' if unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return sep.join(kept[-lines:])[-chars:]
