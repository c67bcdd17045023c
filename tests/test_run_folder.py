"""The run folder is the run's alone: one run at a time, an earlier run's output is not
overwritten without a word, nothing is written through a symlink, and a folder whose
run was killed is repaired and finished by the next run on it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from fixtures_sending import (  # noqa: F401 (fixtures)
    cli_env,
    customers,
    edition,
    edition_command,
    manifest,
    site,
)

RUN = ["run", "campaigns/weekly-newsletter.yaml", "--as-of", "2026-11-23"]


def start(site: Path, *args: object, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([*edition_command(), *RUN, *map(str, args)], cwd=site,
                                env=cli_env(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_rows(out: Path, rows: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 240
    manifest_file = out / "manifest.jsonl"
    while not (manifest_file.exists() and manifest_file.read_bytes().count(b"\n") >= rows):
        assert proc.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, "the run did not get under way"
        time.sleep(0.05)


def test_a_second_run_on_the_same_folder_is_refused_naming_the_holder(
        site: Path, customers: Callable, tmp_path: Path) -> None:
    """Finding 6: two dry runs on one --out gave 20,023 lines for 20,000 customers."""
    path = customers(20_000)
    out = tmp_path / "out"
    first = start(site, "--customers", path, "--out", out, "--batch-size", 200,
                  log=tmp_path / "first.log")
    try:
        wait_for_rows(out, 200, first, tmp_path / "first.log")
        code, stdout, stderr = edition(*RUN, "--customers", path, "--out", out, cwd=site)
        assert code == 1, stdout + stderr
        assert "is using this run folder" in stderr and f"pid {first.pid}" in stderr
        assert "Traceback" not in stderr
        assert first.wait(300) == 0, (tmp_path / "first.log").read_text()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    rows = manifest(out)
    assert len(rows) == 20_000
    assert len({r["customer_id"] for r in rows}) == 20_000


def test_an_earlier_runs_output_is_refused_unless_overwrite(site: Path, customers: Callable,
                                                             tmp_path: Path) -> None:
    path = customers(30)
    out = tmp_path / "out"
    assert edition(*RUN, "--customers", path, "--out", out, cwd=site)[0] == 0
    before = (out / "manifest.jsonl").read_bytes()
    code, stdout, stderr = edition(*RUN, "--customers", path, "--out", out, cwd=site)
    assert code == 1 and "--overwrite" in stderr and "holds the manifest" in stderr
    assert (out / "manifest.jsonl").read_bytes() == before
    code, stdout, stderr = edition(*RUN, "--customers", path, "--out", out, "--limit", 5,
                                   "--overwrite", cwd=site)
    assert code == 0, stdout + stderr
    assert len(manifest(out)) == 5 and len(list((out / "html").iterdir())) == 5


def test_nothing_is_written_through_a_symlink(site: Path, customers: Callable,
                                              tmp_path: Path) -> None:
    """Finding 6: `eml -> /elsewhere` inside --out sent 20 files outside the folder."""
    path = customers(20)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "eml").symlink_to(elsewhere, target_is_directory=True)
    code, stdout, stderr = edition(*RUN, "--customers", path, "--out", out, cwd=site)
    assert code == 1 and "symbolic link" in stderr, stdout + stderr
    assert list(elsewhere.iterdir()) == []
    (out / "eml").unlink()
    (out / "manifest.jsonl").symlink_to(elsewhere / "stolen.jsonl")
    code, _, stderr = edition(*RUN, "--customers", path, "--out", out, cwd=site)
    assert code == 1 and "symbolic link" in stderr
    assert list(elsewhere.iterdir()) == []


def killed_run(site: Path, path: Path, tmp_path: Path, *, after_rows: int) -> Path:
    """A run over `path` killed with SIGKILL once its manifest holds `after_rows` rows;
    its folder (still marked running)."""
    out = tmp_path / "out"
    proc = start(site, "--customers", path, "--out", out, "--batch-size", 100,
                 log=tmp_path / "first.log")
    try:
        wait_for_rows(out, after_rows, proc, tmp_path / "first.log")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    return out


def test_a_killed_run_is_repaired_and_finished_by_the_next_run_on_its_folder(
        site: Path, customers: Callable, tmp_path: Path) -> None:
    path = customers(6_000)
    out = killed_run(site, path, tmp_path, after_rows=500)
    code, stdout, stderr = edition(*RUN, "--customers", path, "--out", out, cwd=site,
                                   timeout=300)
    assert code == 0, stdout + stderr
    assert "resumed an interrupted run" in stdout
    rows = manifest(out)
    assert [r["line"] for r in rows] == list(range(2, 6_002))
    assert {r["status"] for r in rows} == {"rendered"}
    named = {rel for r in rows for rel in r["files"].values()}
    on_disk = {f"{p.parent.name}/{p.name}" for fmt in ("html", "text", "eml")
               for p in (out / fmt).iterdir()}
    assert on_disk == named  # no file without a row, no row without its files
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert "6,000 customer rows" in (out / "report.md").read_text(encoding="utf-8")


def test_a_killed_run_is_resumed_through_prefect_and_says_so(
        site: Path, customers: Callable, tmp_path: Path) -> None:
    """`edition run --via-prefect` on a killed run's folder repairs it once, finishes it,
    and prints what a local run prints: the summary crosses Prefect unchanged (its
    `resumed` was dropped on the way back before)."""
    path = customers(3_000)
    out = killed_run(site, path, tmp_path, after_rows=300)
    code, stdout, stderr = edition(*RUN, "--customers", path, "--out", out, "--via-prefect",
                                   cwd=site, env={"PREFECT_HOME": str(tmp_path / "prefect")},
                                   timeout=600)
    assert code == 0, stdout + stderr
    assert "resumed an interrupted run" in stdout, stdout
    rows = manifest(out)
    assert [r["line"] for r in rows] == list(range(2, 3_002))
    assert {r["status"] for r in rows} == {"rendered"}
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
