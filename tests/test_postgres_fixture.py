"""The throwaway PostgreSQL fixture: without the server binaries it fails, never skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_missing_binaries_fail_the_fixture_naming_the_debian_package(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "from fixtures_postgres import postgres_server  # noqa: F401\n")
    (tmp_path / "test_needs_postgres.py").write_text(
        "def test_it(postgres_server):\n    pass\n")
    env = os.environ | {"EDITION_PG_BIN": str(tmp_path / "no-such-folder"),
                        "PYTHONPATH": os.pathsep.join([str(TESTS),
                                                       os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rA", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 error" in out and "skipped" not in out, out
    assert "install the Debian package `postgresql`" in out, out


def test_the_server_answers_on_127_0_0_1_and_is_throwaway(postgres_server,
                                                          postgresql_url: str) -> None:
    import psycopg

    assert postgresql_url.startswith("postgresql+psycopg://edition@127.0.0.1:")
    with psycopg.connect(postgresql_url.replace("+psycopg", ""), connect_timeout=60) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SELECT current_database()").fetchone() == ("edition",)
    folder = postgres_server.folder
    assert folder is not None and not str(folder).startswith(str(TESTS.parent))
