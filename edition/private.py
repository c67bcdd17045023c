"""Customer data on disk is readable by its owner only (design.md, "Safety").

Run folders (editions, the manifest, the report, run.json), the send ledger and the
suppression store hold names, addresses and what was sent to whom. edition creates
their files 0600 and their folders 0700, whatever the umask of the shell that started
it. `EDITION_UMASK` (octal; default 077) names the permission bits edition withholds:
`EDITION_UMASK=027` lets the owner's group read, `022` gives everyone read access (the
modes most tools use), e.g. for a web server that serves a run folder.

The command line also makes that value its process umask (`protect_process`), so what
other code writes for it (SQLite's -wal and -shm files, temporary files, a delivery
folder) follows the same rule. Files that exist already keep their mode, except the
ledger and the suppression store, which are tightened when opened (`tighten`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edition.errors import UsageError

UMASK_ENV = "EDITION_UMASK"
DEFAULT_UMASK = 0o077
NOFOLLOW = getattr(os, "ONOFOLLOW", 0)


def umask() -> int:
    """The permission bits edition withholds from what it creates (EDITION_UMASK)."""
    text = os.environ.get(UMASK_ENV, "").strip()
    if not text:
        return DEFAULT_UMASK
    try:
        value = int(text, 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o777:
        raise UsageError(f"{UMASK_ENV}={text!r} must be an octal umask such as 077 (owner "
                         f"only, the default), 027 or 022")
    return value


def file_mode() -> int:
    return 0o666 & ~umask()


def folder_mode() -> int:
    return 0o777 & ~umask()


def protect_process() -> None:
    """Make EDITION_UMASK this process's umask (and its children's)."""
    os.umask(umask())


def make_folder(path: Path | str) -> Path:
    """Create a folder and its missing parents, each with the private mode (an existing
    folder is left as it is)."""
    path = Path(path)
    missing = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=folder_mode())
        except FileExistsError:
            continue  # another process made it meanwhile
    return path


def create_file(path: Path | str) -> None:
    """Create an empty file with the private mode unless it exists (SQLite then opens it
    and gives its journal files the same mode).

    An existing file is never opened: closing any descriptor of a SQLite file drops
    every POSIX lock this process holds on it, so another process closing the store
    would take itself for the last one and delete the WAL the server still writes to."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode())
    except FileExistsError:
        return
    os.close(fd)


def open_file(path: Path | str, *, append: bool = False) -> int:
    """A descriptor for writing a new (or truncated, or appended-to) private file."""
    flags = os.O_WRONLY | os.O_CREAT | NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    return os.open(path, flags, file_mode())


def write_file(path: Path | str, data: bytes) -> None:
    """Write a whole private file (the caller renames it into place)."""
    fd = open_file(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:  # os.write names no file: a full disk should say which
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from None
    finally:
        os.close(fd)


def tighten(path: Path | str) -> None:
    """Take away the bits EDITION_UMASK withholds from a file this user owns (a ledger
    or store made before edition created them private)."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return
    if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
        mode = stat.S_IMODE(info.st_mode)
        if mode & umask():
            os.chmod(path, mode & ~umask())
