"""A full disk is one clear message naming the file, exit 1, no traceback (issue 17, 15d).

`edition run --out` on a full disk exited 1 after a 49-line traceback (the manifest's
write, then the repair's write of the same file). The disk here is real where the test
may mount one: a 64 KiB tmpfs (root with the mount capability: this machine and CI as
root). Elsewhere the same tests run the CLI under RLIMIT_FSIZE, where a write past the
limit fails with EFBIG: the same path through the code, never a skip. A read-only
folder is a read-only tmpfs (EROFS), else a folder without write permission (EACCES,
as a user other than root, whom permissions do not stop).
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

from edition.audience.sampledata import write_customers

LIMIT = 64 * 1024
Disk = Callable[..., "Path | None"]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)
    write_customers(root / "data" / "customers.csv", 300, seed=5)
    return root


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Disk]:
    """`tmpfs(name, "ro")`: a 64 KiB file system of its own (unmounted after), or None
    where this process may not mount one."""
    mounted: list[Path] = []

    def mount(name: str, *options: str) -> Path | None:
        where = tmp_path / name
        where.mkdir()
        if os.geteuid() != 0:
            return None
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(["size=64k", *options]),
                               "tmpfs", str(where)], check=False, capture_output=True,
                              timeout=60)
        if done.returncode != 0:  # root in a container without CAP_SYS_ADMIN
            return None
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
                                                       tmpfs: Disk) -> None:
    disk = tmpfs("tiny")
    out = (disk or tmp_path) / "run"
    code, _, stderr = edition("run", "campaigns/weekly-newsletter.yaml", "--out", out,
                              "--as-of", AS_OF, cwd=site,
                              file_limit=None if disk else LIMIT)
    if disk:
        assert_one_clean_message(code, stderr, out, "No space left on device")
        assert "the disk is full" in stderr
    else:
        assert_one_clean_message(code, stderr, out, "File too large")


def test_a_file_size_limit_is_the_same_clean_error(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, _, stderr = edition("run", "campaigns/weekly-newsletter.yaml", "--out", out,
                              "--as-of", AS_OF, cwd=site, file_limit=LIMIT)
    assert_one_clean_message(code, stderr, out, "File too large")
    assert "ulimit -f" in stderr


def test_a_read_only_or_forbidden_folder_is_a_clean_error(site: Path, tmp_path: Path,
                                                          tmpfs: Disk) -> None:
    folder, words, limit = tmpfs("ro", "ro"), "Read-only file system", None
    if folder is None and os.geteuid() != 0:
        folder, words = tmp_path / "locked", "Permission denied"
        folder.mkdir(mode=0o500)
    elif folder is None:  # root that may not mount: permissions do not stop it
        folder, words, limit = tmp_path / "limited", "File too large", LIMIT
    out = folder / "run"
    code, _, stderr = edition("run", "campaigns/weekly-newsletter.yaml", "--out", out,
                              "--as-of", AS_OF, cwd=site, file_limit=limit)
    assert_one_clean_message(code, stderr, out, words)


def test_a_send_ledger_on_a_full_disk_names_the_ledger(site: Path, tmp_path: Path,
                                                       tmpfs: Disk) -> None:
    """SQLite says "database or disk is full": the message names the ledger file."""
    disk = tmpfs("ledger")
    ledger = (disk or tmp_path) / "ledger.sqlite"
    code, _, stderr = edition(
        "run", "campaigns/weekly-newsletter.yaml", "--out", tmp_path / "run", "--as-of",
        AS_OF, "--send", "--yes", "--to", f"local:{tmp_path / 'outbox'}", cwd=site,
        env={"EDITION_LEDGER_URL": str(ledger)}, file_limit=None if disk else LIMIT)
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    if disk:
        assert str(ledger) in stderr and "send ledger" in stderr, stderr
