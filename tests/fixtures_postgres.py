"""A throwaway PostgreSQL server for the tests that need one (and for bench/ledger.py).

`TemporaryPostgres` runs its own cluster with Debian's server binaries (`initdb`,
`pg_ctl`) in a temporary folder outside the working tree: a free port on 127.0.0.1
only, the unix socket in that folder too, trust authentication, and (for tests)
fsync off. initdb and the server refuse to run as root, so under root they run as the
`postgres` system user (or `nobody`) with the folder handed to that user.

Missing binaries are a failure that names the Debian package, never a skip: CI
installs `postgresql`, and a skipped ledger test would hide a broken backend.

Fixtures:
- `postgres_server` (session): the running server; `.create_database()` gives a new,
  empty database's URL.
- `postgresql_url` (session): the URL of one database shared by the session.
- `fresh_postgresql_url`: a new database per test, so tests never see each other's rows.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SUPERUSER = "edition"
START_TIMEOUT = 120  # seconds: a loaded 2-core machine can be slow to run initdb + start
DEBIAN_HINT = ("install the Debian package `postgresql` (apt-get install postgresql); "
               "or point EDITION_PG_BIN at a folder holding initdb and pg_ctl")


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the cluster would not start."""


def find_bin_dir() -> Path:
    """EDITION_PG_BIN (only that folder), else the newest /usr/lib/postgresql/*/bin,
    else PATH."""
    candidates: list[Path] = []
    if os.environ.get("EDITION_PG_BIN"):
        candidates.append(Path(os.environ["EDITION_PG_BIN"]))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                      else 0, reverse=True)
    on_path = shutil.which("initdb")
    if not candidates:
        candidates += [Path(v) for v in versions]
        if on_path:
            candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise PostgresUnavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found; "
                              f"{DEBIAN_HINT}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable("running as root, and neither a `postgres` nor a `nobody` "
                              "user exists to run initdb as")


class TemporaryPostgres:
    """One PostgreSQL cluster in a temporary folder; `start()`, `stop()`, URLs."""

    def __init__(self, *, fsync: bool = False, settings: dict[str, str] | None = None):
        self.bin_dir = find_bin_dir()
        self.fsync = fsync
        self.settings = dict(settings or {})
        self.port = 0
        self.folder: Path | None = None
        self._as_user: list[str] = []

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> TemporaryPostgres:
        # /tmp, not pytest's tmp_path: that one is private to root (0700), and the
        # socket path must stay short (unix sockets allow ~100 characters).
        self.folder = Path(tempfile.mkdtemp(prefix="edition-pg-"))
        try:
            self._prepare_user()
            self._initdb()
            for attempt in range(3):  # a free port can be taken between probe and bind
                self.port = free_port()
                if self._start_server():
                    return self
                if attempt == 2 or "already in use" not in self.log():
                    break
            raise PostgresUnavailable(f"PostgreSQL did not start:\n{self.log()[-3000:]}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (immediately: it is throwaway) and remove its folder."""
        if self.folder is None:
            return
        data = self.folder / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run([*self._as_user, str(self.bin_dir / "pg_ctl"), "-D", str(data),
                            "-m", "immediate", "-w", "-t", "60", "stop"],
                           cwd=self.folder, capture_output=True, timeout=90, check=False)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- using it ------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                             dbname="postgres", autocommit=True, connect_timeout=60) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        if self.folder is None:
            return ""
        try:
            return (self.folder / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    # --- internals -----------------------------------------------------------------------

    def _prepare_user(self) -> None:
        assert self.folder is not None
        if os.geteuid() != 0:
            return
        user = _unprivileged_user()
        os.chown(self.folder, user.pw_uid, user.pw_gid)
        self._as_user = ["runuser", "-u", user.pw_name, "--"]

    def _run(self, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess:
        assert self.folder is not None
        return subprocess.run([*self._as_user, *args], cwd=self.folder, capture_output=True,
                              text=True, timeout=timeout, check=False,
                              env=os.environ | {"LC_ALL": "C.UTF-8", "TZ": "UTC"})

    def _initdb(self) -> None:
        assert self.folder is not None
        done = self._run(str(self.bin_dir / "initdb"), "-D", str(self.folder / "data"),
                         "-U", SUPERUSER, "--auth-local=trust", "--auth-host=trust",
                         "-E", "UTF8", "--no-instructions", "--no-sync")
        if done.returncode:
            raise PostgresUnavailable(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        (self.folder / "sock").mkdir()
        if self._as_user:
            user = _unprivileged_user()
            os.chown(self.folder / "sock", user.pw_uid, user.pw_gid)

    def _start_server(self) -> bool:
        assert self.folder is not None
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.folder / "sock"),
            "fsync": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            # the ledger must turn this back on for its own commits (tests check it)
            "synchronous_commit": "on" if self.fsync else "off",
            "max_connections": "100",
            "shared_buffers": "32MB",
            **self.settings,
        }
        options = " ".join(f"-c {k}={v}" for k, v in settings.items())
        done = self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.folder / "data"),
                         "-l", str(self.folder / "server.log"), "-w", "-t",
                         str(START_TIMEOUT), "-o", f"-p {self.port} {options}", "start",
                         timeout=START_TIMEOUT + 30)
        if done.returncode == 0:
            return True
        time.sleep(0.2)
        return False


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TemporaryPostgres]:
    """A PostgreSQL server for the whole session (fails, never skips, without binaries)."""
    try:
        server = TemporaryPostgres().start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgresql_url(postgres_server: TemporaryPostgres) -> str:
    """`postgresql+psycopg://…` of one database created for the session."""
    return postgres_server.create_database("edition")


@pytest.fixture
def fresh_postgresql_url(postgres_server: TemporaryPostgres) -> str:
    """A new, empty database for this test alone."""
    return postgres_server.create_database()
