"""A throwaway PostgreSQL cluster for the tests that talk to PostgreSQL.

Made with the server's own binaries (`initdb`, `pg_ctl`; Debian keeps them in
/usr/lib/postgresql/<version>/bin) in a temporary folder, on a free port on 127.0.0.1,
with trust authentication, and stopped and removed at the end of the session. Nothing
has to be running beforehand. Run as root, the cluster belongs to the `postgres` user
(initdb refuses to run as root).

Imported explicitly by the test files that need it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    configured = os.environ.get("EDITION_TEST_PG_BIN")
    if configured:
        return Path(configured)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """`postgresql://edition@127.0.0.1:<port>/postgres` of a cluster started for the tests."""
    bin_dir = _bin_dir()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    as_root = os.geteuid() == 0
    prefix: list[str] = ["runuser", "-u", "postgres", "--"] if as_root else []
    # directly under /tmp: the postgres user must be able to reach it
    base = Path(tempfile.mkdtemp(prefix="edition-unsub-pg-", dir="/tmp" if as_root else None))
    if as_root:
        shutil.chown(base, user="postgres")
    data, port = base / "data", _free_port()
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
    try:
        subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "edition", "-E", "UTF8", "--no-sync"], cwd=base, env=env,
                       check=True, capture_output=True, timeout=300)
        options = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off")
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l",
                        str(base / "server.log"), "-w", "-t", "180", "-o", options, "start"],
                       cwd=base, env=env, check=True, capture_output=True, timeout=240)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = (base / "server.log").read_text(errors="replace") if (
            base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL for the tests: {exc}\n"
                           f"{getattr(exc, 'stderr', b'')!r}\n{log}") from exc
    try:
        yield f"postgresql://edition@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "-w", "-t", "120", "stop"], cwd=base, env=env, capture_output=True,
                       timeout=180, check=False)
        shutil.rmtree(base, ignore_errors=True)
