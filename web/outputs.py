"""The output folder over HTTP, read-only, on loopback: what `edition serve` publishes so
that the links in the runs' Prefect artifacts open in a browser next to the UI.

An ASGI app (Starlette) served by uvicorn in a thread of serve's process. A folder's
index lists a run folder's report first, then the manifest and versions.json, the
format folders, the other files. The tool's own state (locks, dot files such as
serve's record, the ledger and suppression databases) is neither listed nor served;
nothing outside the folder is reachable (no `..`, no symlink out of it). Text is sent
with its charset (browsers read text without one as Windows-1252: "â€”" for "—").
"""

from __future__ import annotations

import contextlib
import html
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import quote

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

DEFAULT_PORT = 4280
# What a folder's index lists first, in this order; then folders, then files.
FIRST = ("report.md", "manifest.jsonl", "versions.json")
TYPES = {".md": "text/markdown; charset=utf-8", ".txt": "text/plain; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".json": "application/json; charset=utf-8",
         ".jsonl": "application/x-ndjson; charset=utf-8", ".eml": "message/rfc822",
         ".pdf": "application/pdf", ".csv": "text/csv; charset=utf-8"}
STARTUP_SECONDS = 30.0


def hidden(name: str) -> bool:
    """Files that are the tool's state, not a run's output: locks, dot files (serve's own
    record), the ledger and suppression databases. Neither listed nor served."""
    return name.startswith(".") or name.endswith((".lock", ".sqlite", ".sqlite-journal",
                                                  ".sqlite-wal", ".sqlite-shm"))


def create_app(folder: Path) -> Starlette:
    """The app serving `folder` read-only."""
    root = Path(folder).resolve()

    async def serve(request: Request) -> Response:
        wanted = request.path_params["path"]
        parts = [p for p in wanted.split("/") if p]
        if any(p == ".." or hidden(p) for p in parts):
            return Response("File not found", status_code=404)
        target = root.joinpath(*parts)
        try:
            real = target.resolve()
            real.relative_to(root)
        except (OSError, ValueError):
            return Response("File not found", status_code=404)
        if real.is_dir():
            if wanted and not wanted.endswith("/"):
                return RedirectResponse(f"/{quote(wanted)}/", status_code=301)
            return HTMLResponse(index(real, f"/{wanted}"))
        if not real.is_file():
            return Response("File not found", status_code=404)
        return FileResponse(real, media_type=TYPES.get(real.suffix.lower(),
                                                       "application/octet-stream"))

    return Starlette(routes=[Route("/{path:path}", serve, methods=["GET", "HEAD"])])


def index(folder: Path, shown: str) -> str:
    """A folder's index page (see the module docstring)."""
    try:
        entries = [e for e in os.scandir(folder) if not hidden(e.name)]
    except OSError:
        entries = []
    order = {name: n for n, name in enumerate(FIRST)}
    entries.sort(key=lambda e: (order.get(e.name, len(FIRST)),
                                0 if e.name in order else (1 if e.is_dir() else 2),
                                e.name.lower()))
    rows = [] if shown in {"", "/"} else ['<li><a href="../">../</a> (up)</li>']
    for entry in entries:
        name = entry.name + ("/" if entry.is_dir() else "")
        detail = ""
        if entry.is_file():
            with contextlib.suppress(OSError):
                detail = f" <small>{entry.stat().st_size:,} bytes</small>"
        rows.append(f'<li><a href="{quote(name)}">{html.escape(name)}</a>{detail}</li>')
    title = html.escape(shown)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
            '<style>body{font:16px/1.5 system-ui,sans-serif;margin:2em}</style>'
            f"</head><body><h1>{title}</h1><ul>{''.join(rows)}</ul></body></html>")


class OutputServer:
    """The app on 127.0.0.1 in a daemon thread; `shutdown` stops it."""

    def __init__(self, folder: Path, port: int | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        self.socket = _bound(DEFAULT_PORT if port is None else port)
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        config = uvicorn.Config(create_app(folder), log_level="warning", access_log=False,
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="edition-output", daemon=True)

    def start(self) -> OutputServer:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.server.started and self.thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return self

    def shutdown(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=2)   # serve stops within seconds (flows/serve.py)

    def server_close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.close()


def _bound(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1: the port asked for, else any free one."""
    for wanted in (port, 0):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", wanted))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        sock.set_inheritable(False)
        return sock
    raise OSError(f"cannot listen on 127.0.0.1:{port} or any free port")


def start_output_server(folder: Path, port: int | None = None) -> tuple[OutputServer, str]:
    """Serve `folder` read-only on 127.0.0.1 (the given port, else any free one)."""
    server = OutputServer(folder, port).start()
    return server, server.url


__all__ = ["DEFAULT_PORT", "OutputServer", "create_app", "hidden", "start_output_server"]
