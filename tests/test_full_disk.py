"""A full disk is one clear message naming the file, exit 1, no traceback (issue 17, 15d).

`edition run --out` on a full disk exited 1 after a 49-line traceback (the manifest's
write, then the repair's write of the same file). The disk here is real: a 64 KiB tmpfs
mounted for the test, which needs root, as CI runs (.ci/run). Without root, the same
test runs the CLI under RLIMIT_FSIZE, where a write past the limit fails with EFBIG:
the same path through the code, never a skip. A read-only folder is a read-only tmpfs
as root (EROFS) and a folder without write permission otherwise (EACCES; root ignores
permissions).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import AS_OF, CONTENT_DIRS, REPO

from edition.sampledata import write_customers

ROOT = os.geteuid() == 0


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)
    write_customers(root / "data" / "customers.csv", 300, seed=5)
    return root


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """`tmpfs(name, "size=64k", "ro")`: a small file system of its own, unmounted after."""
    mounted: list[Path] = []

    def mount(name: str, *options: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(["size=64k", *options]),
                        "tmpfs", str(where)], check=True, capture_output=True, timeout=60)
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True,
                       timeout=60)


def edition(*args: object, cwd: Path, file_limit: int | None = None,
            env: dict[str, str] | None = None) -> tuple[int, str, str]:
    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    proc = subprocess.run([sys.executable, "-m", "cli", *map(str, args)], cwd=cwd,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200",
                               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **(env or {})},
                          capture_output=True, text=True, timeout=600, preexec_fn=limit,
                          check=False)
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_clean_message(code: int, stderr: str, under: Path, words: str) -> None:
    assert code == 1, stderr
    assert "Traceback" not in stderr and 'File "' not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert f"cannot write {under}" in errors[0] and words in errors[0], errors
    assert len(stderr.strip().splitlines()) <= 4, stderr


def test_a_run_onto_a_full_disk_says_so_in_one_message(site: Path, tmp_path: Path,
                                                       tmpfs: Callable[..., Path]) -> None:
    if ROOT:
        out = tmpfs("tiny") / "run"
        code, _, stderr = edition("run", "campaigns/weekly-newsletter.yaml", "--out", out,
                                  "--as-of", AS_OF, cwd=site)
        assert_one_clean_message(code, stderr, out, "No space left on device")
        assert "the disk is full" in stderr
    else:
        out = tmp_path / "run"
        code, _, stderr = edition("run", "campaigns/weekly-newsletter.yaml", "--out", out,
                                  "--as-of", AS_OF, cwd=site, file_limit=64 * 1024)
        assert_one_clean_message(code, stderr, out, "File too large")


def test_a_file_size_limit_is_the_same_clean_error(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, _, stderr = edition("run", "campaigns/weekly-newsletter.yaml", "--out", out,
                              "--as-of", AS_OF, cwd=site, file_limit=64 * 1024)
    assert_one_clean_message(code, stderr, out, "File too large")
    assert "ulimit -f" in stderr


def test_a_read_only_or_forbidden_folder_is_a_clean_error(site: Path, tmp_path: Path,
                                                          tmpfs: Callable[..., Path]) -> None:
    if ROOT:
        folder = tmpfs("ro", "ro")
        words = "Read-only file system"
    else:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
        words = "Permission denied"
    out = folder / "run"
    code, _, stderr = edition("run", "campaigns/weekly-newsletter.yaml", "--out", out,
                              "--as-of", AS_OF, cwd=site)
    assert_one_clean_message(code, stderr, out, words)


def test_a_send_ledger_on_a_full_disk_names_the_ledger(site: Path, tmp_path: Path,
                                                       tmpfs: Callable[..., Path]) -> None:
    """SQLite says "database or disk is full": the message names the ledger file."""
    if ROOT:
        ledger = tmpfs("ledger") / "ledger.sqlite"
        limit = None
    else:
        ledger, limit = tmp_path / "ledger.sqlite", 64 * 1024
    code, _, stderr = edition(
        "run", "campaigns/weekly-newsletter.yaml", "--out", tmp_path / "run", "--as-of",
        AS_OF, "--send", "--yes", "--to", f"local:{tmp_path / 'outbox'}", cwd=site,
        env={"EDITION_LEDGER_URL": str(ledger)}, file_limit=limit)
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    assert str(ledger) in stderr and "send ledger" in stderr, stderr
