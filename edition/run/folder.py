"""The run folder: customer files that stay inside it, the manifest beside them, and
`run.json`, which says whose run it is and how far it got.

Files are written atomically (temp file + rename), never through a symlink, each path
at most once, readable by their owner only (edition.private: 0600 files, 0700 folders).
One run at a time holds the folder (an OS file lock, released when its process dies,
even on kill -9); `run.json` names the holder so a second run can say who.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import socket
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock, Timeout

from edition import private
from edition.errors import FolderBusy, RunError
from edition.naming import EXTENSIONS

RUN_FILE = "run.json"
LOCK_FILE = ".edition.lock"


class FileWriter:
    """Writes files under one folder only, each path at most once, never through a link."""

    def __init__(self, root: Path):
        self.root = Path(os.path.abspath(root))
        self.written: set[str] = set()
        self.folders: set[str] = set()

    def path(self, relative: str) -> str:
        """The absolute path; anything that could climb out of the folder is refused."""
        padded = f"/{relative}/"
        if (not relative or "\\" in relative or "\0" in relative or "//" in padded
                or "/./" in padded or "/../" in padded):
            raise RunError(f"refusing to write outside the run folder: {relative!r}")
        return f"{self.root}/{relative}"

    def _folder(self, folder: str) -> None:
        """Create `folder` under the root, refusing any part of it that is a symlink."""
        if folder in self.folders:
            return
        private.make_folder(self.root)
        rel = os.path.relpath(folder, self.root)
        current = str(self.root)
        for part in ([] if rel == "." else rel.split(os.sep)):
            current = os.path.join(current, part)
            with suppress(FileExistsError):
                os.mkdir(current, private.folder_mode())
            if os.path.islink(current) or not os.path.isdir(current):
                raise RunError(f"refusing to write through {current}: it is a symlink or "
                               f"not a folder")
        self.folders.add(folder)

    def flush(self) -> None:
        """Files are on disk when `write` returns (an object store's writer queues)."""

    def write(self, relative: str, data: bytes) -> None:
        """Write atomically (temp file + rename): a crash never leaves half a file."""
        if relative in self.written:
            raise RunError(f"two customers would write the same file: {relative}")
        target = self.path(relative)
        folder = os.path.dirname(target)
        self._folder(folder)
        temp = f"{folder}/.{os.path.basename(target)}.{os.getpid()}.tmp"
        # os-level calls: a buffered file object costs more than the write itself here
        try:
            fd = private.open_file(temp)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RunError(f"refusing to write through a symlink: {temp}") from None
            raise RunError(f"cannot write {target}: {exc.strerror}") from None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as exc:
            raise RunError(f"cannot write {target}: {exc.strerror}") from None
        finally:
            os.close(fd)
        # rename replaces a symlink at the target itself rather than following it
        os.replace(temp, target)
        self.written.add(relative)

    def get(self, relative: str) -> bytes | None:
        """A file of the folder (None when it is not there); never through a symlink."""
        try:
            fd = os.open(self.path(relative), os.O_RDONLY | private.NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RunError(f"cannot read {relative}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def close(self) -> None:
        """Nothing to let go of (an object store's folder has a client and a pool)."""


def is_remote(location: str | Path) -> bool:
    """`s3://bucket/prefix`: a run folder in object storage."""
    return isinstance(location, str) and "://" in location


def open_writer(location: str | Path) -> Any:
    """The writer of a run folder: FileWriter for a path, else the folder of its scheme
    (the `edition.folders` entry points: publishers.s3_folder.S3Folder for s3://)."""
    if not is_remote(location):
        return FileWriter(Path(location))
    from importlib.metadata import entry_points

    scheme = str(location).split("://", 1)[0].lower()
    found = [ep for ep in entry_points(group="edition.folders") if ep.name == scheme]
    if not found:
        raise RunError(f"--out {location}: run folders can be a path or s3://bucket/prefix")
    return found[0].load()(str(location))


def read_from(location: str | Path, relative: str) -> bytes | None:
    """One file of a run folder, wherever it is (a path or s3://…): every reader of a run
    folder goes through here or `open_writer`, never through `Path(location)`, which
    turns `s3://bucket/x` into the local path `s3:/bucket/x`."""
    folder = open_writer(location)
    try:
        data: bytes | None = folder.get(relative)
        return data
    finally:
        folder.close()


# -- who holds a run folder ---------------------------------------------------------


def owner() -> dict[str, Any]:
    """This process, so that another can tell whether it still runs (pids get reused)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _started(pid)}


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def alive_here(info: dict[str, Any]) -> bool | None:
    """True/False when the owner ran on this host; None when we cannot tell."""
    if info.get("host") != socket.gethostname() or not info.get("pid"):
        return None
    pid = int(info["pid"])
    if not psutil.pid_exists(pid):
        return False
    started, recorded = _started(pid), info.get("pid_start")
    if started is None or not isinstance(recorded, int | float):
        return True
    # a different start time: the pid was reused by another process
    return abs(started - float(recorded)) < 1.0


def write_json(path: Path, document: dict[str, Any]) -> None:
    """A small JSON file, atomically."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    private.write_file(temp, (json.dumps(document, indent=2, ensure_ascii=False, default=str)
                              + "\n").encode("utf-8"))
    os.replace(temp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_run_file(folder: Path) -> dict[str, Any] | None:
    return read_json(Path(folder) / RUN_FILE)


def write_run_file(folder: Path, document: dict[str, Any]) -> None:
    write_json(Path(folder) / RUN_FILE, document)


class FolderLock:
    """The run folder's lock: one run at a time, dry runs too."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = FileLock(str(folder / LOCK_FILE), timeout=0, mode=private.file_mode())

    def acquire(self) -> FolderLock:
        private.make_folder(self.folder)
        try:
            self._lock.acquire()
        except Timeout:
            info = read_run_file(self.folder) or {}
            holder = (f"run {info.get('run_id', '?')} (pid {info.get('pid', '?')} on "
                      f"{info.get('host', '?')})" if info else "another run")
            raise FolderBusy(f"{holder} is using this run folder; wait for it to finish "
                             f"or choose another --out", self.folder) from None
        return self

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


RUN_NAMES = ("manifest.jsonl", "report.md", "versions.json", RUN_FILE, LOCK_FILE, "html",
             "text", "eml", "pdf", "outbox")


def refuse_links(folder: Path, names: tuple[str, ...] = RUN_NAMES) -> None:
    """A run folder holding a symlink where a run writes is refused: nothing is written
    through a link (it could lead anywhere)."""
    for name in names:
        if (folder / name).is_symlink():
            raise RunError(f"{folder / name} is a symbolic link; edition writes nothing "
                           f"through links (remove it, or choose another --out)", folder)


# -- tidying a folder a run left behind ---------------------------------------------


def customer_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of every file in the format folders, temp files included."""
    for fmt in EXTENSIONS:
        sub = folder / fmt
        if sub.is_dir() and not sub.is_symlink():
            for path in sub.iterdir():
                yield f"{fmt}/{path.name}", path


def remove_unlisted(folder: Path, listed: set[str]) -> list[str]:
    """Delete customer files no manifest row names (a batch rendered but not collected)."""
    removed = []
    for rel, path in customer_files(folder):
        if path.name.endswith(".tmp") or rel not in listed:
            path.unlink(missing_ok=True)
            removed.append(rel)
    return removed


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
