"""One `edition serve` per content root (an OS file lock on its out/ folder, with a
record of who holds it), and which flow runs are alive in that folder: two serves would
take each other's runs for dead ones."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from edition.databases import masked
from edition.errors import FolderBusy
from edition.run.folder import RUN_FILE, alive_here, now, owner, read_json, write_json


def still_running(out: Path, flow_run_id: str) -> bool:
    """Whether a campaign's folder `out` holds this flow run's run, running here."""
    if not out.is_dir():
        return False
    for info_path in out.glob(f"*/{RUN_FILE}"):
        info = read_json(info_path)
        if info and info.get("flow_run_id") == flow_run_id and info.get("status") == "running":
            return alive_here(info) is True
    return False


SERVE_FILE = ".edition-serve.json"
SERVE_LOCK = ".edition-serve.lock"


class ServeLockError(FolderBusy):
    """Another `edition serve` is running for the same content root."""


class ServeLock:
    """Held by one `edition serve` per content root while it runs (an OS file lock)."""

    def __init__(self, out_root: Path):
        self.out_root = out_root
        self._lock = FileLock(str(out_root / SERVE_LOCK), timeout=0)

    def acquire(self, api_url: str | None) -> dict[str, Any] | None:
        """Take the lock, record this process; return the previous serve's record."""
        self.out_root.mkdir(parents=True, exist_ok=True)
        previous = read_json(self.out_root / SERVE_FILE)
        try:
            self._lock.acquire()
        except Timeout:
            who = f" (pid {previous.get('pid')} on {previous.get('host')})" if previous else ""
            raise ServeLockError(f"edition serve is already running for this folder{who}; "
                                 f"stop it first", self.out_root) from None
        write_json(self.out_root / SERVE_FILE, {"api_url": masked(api_url) if api_url else None,
                                                "started": now(), **owner()})
        return previous

    def release(self) -> None:
        path = self.out_root / SERVE_FILE
        info = read_json(path)
        if info and info.get("pid") == os.getpid():
            path.unlink(missing_ok=True)
        self._lock.release()


def live_flow_runs(out_root: Path) -> set[str]:
    """Flow run ids whose run folder says running and whose process is alive here."""
    live: set[str] = set()
    if not out_root.is_dir():
        return live
    for info_path in out_root.glob(f"*/*/{RUN_FILE}"):
        info = read_json(info_path)
        if info and info.get("status") == "running" and info.get("flow_run_id") \
                and alive_here(info):
            live.add(str(info["flow_run_id"]))
    return live
