"""The SQLite ledger's run lock: a lock file beside the ledger, released by the OS when
the process dies (even on kill -9), and a pid file naming its holder for the next run.
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock, Timeout

from edition import private
from edition.errors import LedgerBusy

__all__ = ["lock_file"]


def lock_file(path: Path, wait: float) -> FileLock:
    lock = FileLock(str(path), timeout=max(0.0, wait), mode=private.file_mode())
    try:
        lock.acquire()
    except Timeout:
        holder = _holder(path)
        raise LedgerBusy(
            f"another run is using this send ledger (pid {holder}); wait for it to "
            "finish, then rerun: already-sent customers are skipped",
            str(path.with_suffix(""))) from None
    private.write_file(_holder_file(path), f"{os.getpid()}\n".encode())
    return lock


def _holder_file(path: Path) -> Path:
    return path.with_name(path.name + ".pid")


def _holder(path: Path) -> str:
    try:
        return _holder_file(path).read_text().strip() or "?"
    except OSError:
        return "?"
