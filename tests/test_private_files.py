"""Customer data on disk is readable by its owner only (issue 17, finding 15a).

Run files, `ledger.sqlite` and the suppression store used to be created 0644 (0755
folders) under the usual umask 022: any local user could read every address, name and
edition. Now files are 0600 and folders 0700, whatever the umask of the shell, unless
EDITION_UMASK says otherwise (edition/private.py).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import AS_OF, CONTENT_DIRS, REPO, run_cli

from edition.audience.sampledata import write_customers


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The umask most shells start with: new files 0644, new folders 0755."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)
    write_customers(root / "data" / "customers.csv", 40, seed=11)
    return root


def modes(*roots: Path) -> dict[str, str]:
    """Every file and folder under the roots (the roots too): path -> octal mode."""
    found = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            found[str(path)] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def loose(found: dict[str, str], file_mode: str = "0o600",
          folder_mode: str = "0o700") -> dict[str, str]:
    return {p: m for p, m in found.items()
            if m != (folder_mode if Path(p).is_dir() else file_mode)}


def test_a_send_leaves_only_owner_readable_files(site: Path, tmp_path: Path,
                                                 loose_umask: None) -> None:
    out, outbox = tmp_path / "runs" / "r1", tmp_path / "outbox"
    code, _, stderr = run_cli(
        "run", "campaigns/weekly-newsletter.yaml", "--customers", "data/customers.csv",
        "--out", out, "--as-of", AS_OF, "--send", "--yes", "--to", f"local:{outbox}",
        cwd=site)
    assert code == 0, stderr
    ledger = site / "out" / "weekly-newsletter"
    assert (ledger / "ledger.sqlite").is_file() and (out / "manifest.jsonl").is_file()
    found = modes(out, outbox, ledger, tmp_path / "runs")
    assert len(found) > 40
    assert loose(found) == {}
    # the folders edition made on the way to the run folder, too
    assert oct(stat.S_IMODE((site / "out").stat().st_mode)) == "0o700"


def test_edition_umask_opens_them_up_when_asked(site: Path, tmp_path: Path,
                                                loose_umask: None) -> None:
    out = tmp_path / "runs" / "r1"
    code, _, stderr = run_cli("run", "campaigns/weekly-newsletter.yaml", "--customers",
                              "data/customers.csv", "--out", out, "--as-of", AS_OF,
                              cwd=site, env={"EDITION_UMASK": "022"})
    assert code == 0, stderr
    assert loose(modes(out), "0o644", "0o755") == {}
    code, _, stderr = run_cli("validate", "campaigns/weekly-newsletter.yaml", cwd=site,
                              env={"EDITION_UMASK": "rw-r--r--"})
    assert code == 2 and "EDITION_UMASK='rw-r--r--' must be an octal umask" in stderr
    assert "Traceback" not in stderr


def test_the_engine_writes_privately_without_the_cli(tmp_path: Path,
                                                     loose_umask: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A flow run in a Prefect worker that no `edition` command started: no umask of
    ours, the files are private all the same."""
    from edition.outcomes import ManifestRow
    from edition.run.folder import FileWriter, FolderLock, write_run_file
    from edition.run.manifest import ManifestWriter
    from edition.send.ledger.sqlite import SendLedger
    from edition.store.suppressions import SuppressionStore

    monkeypatch.delenv("EDITION_UMASK", raising=False)
    folder = tmp_path / "out" / "campaign" / "run"
    with FolderLock(folder):
        FileWriter(folder).write("html/C1.html", b"<p>Hello Ann</p>")
        write_run_file(folder, {"run_id": "r"})
        writer = ManifestWriter(folder / "manifest.jsonl")
        writer.write([ManifestRow("C1", "rendered", 2)])
        writer.close()
    with SendLedger(tmp_path / "out" / "campaign" / "ledger.sqlite") as ledger:
        ledger.claim("campaign", "C1", "2026-11-02:email", "run")
        wal = modes(tmp_path / "out" / "campaign")  # -wal/-shm exist while it is open
    store = SuppressionStore(f"sqlite:///{tmp_path / 'data' / 'suppression.sqlite'}")
    store.record("campaign", "C1", "hash", "test")
    during = modes(tmp_path / "data")
    store.close()
    assert any(p.endswith("-wal") for p in wal) and any(p.endswith("-wal") for p in during)
    assert loose({**modes(tmp_path / "out"), **wal, **during,
                  **modes(tmp_path / "data")}) == {}


def test_a_ledger_made_0644_by_an_earlier_version_is_tightened(
        tmp_path: Path, loose_umask: None) -> None:
    from edition.send.ledger.sqlite import SendLedger

    path = tmp_path / "ledger.sqlite"
    with SendLedger(path):
        pass
    path.chmod(0o644)
    with SendLedger(path):
        pass
    assert oct(stat.S_IMODE(path.stat().st_mode)) == "0o600"
