"""The Prefect side's repair of a dead run (flows/recovery.py: at `edition serve`'s start
and from the flow's on_crashed/on_cancellation hook) tells what the dead run sent as the
send ledger says, as `edition run`'s own repair does (edition/run/repair.py): a customer
whose message went out is never `failed` (design.md: the ledger is the truth for what
was sent). Before, the flow path repaired without the ledger: a dead send whose
customer files were not on this disk (a folder in S3 keeps none of them here) showed
every customer it did not get to record as `failed`, mail sent or not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONTENT = ("campaigns", "templates", "articles", "offers", "greetings")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    for folder in CONTENT:
        shutil.copytree(REPO / folder, root / folder)
    from edition.audience.sampledata import write_customers

    write_customers(root / "data" / "customers.csv", 90, seed=11)
    return root


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _killed_mid_send(site: Path) -> tuple[Path, list[dict[str, object]]]:
    """A send that delivered everyone, then died with 30 rows recorded and no customer
    file on this disk (as a run whose folder is in S3 leaves its local side)."""
    from edition.run.folder import read_run_file, write_run_file
    from edition.run.lifecycle import execute
    from edition.run.options import RunOptions

    out = site / "out" / "weekly-newsletter" / "run-1"
    options = RunOptions(campaign=str(site / "campaigns" / "weekly-newsletter.yaml"),
                         out=str(out), batch_size=30, send=True, to="local").resolved()
    assert execute(options).counts.get("sent") == 90
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:30]),
                                        encoding="utf-8")
    for row in rows[30:]:
        for rel in row["files"].values():
            (out / rel).unlink()
    write_run_file(out, (read_run_file(out) or {}) | {"status": "running",
                                                       "pid": _dead_pid()})
    return out, rows


def _statuses(out: Path) -> dict[str, str]:
    return {r["customer_id"]: r["status"] for r in
            map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def test_serve_start_repairs_a_dead_send_as_its_ledger_says(site: Path) -> None:
    from edition.content.campaign import load_campaign
    from flows.recovery import recover_campaign

    out, rows = _killed_mid_send(site)
    [repaired] = recover_campaign(load_campaign(site / "campaigns" / "weekly-newsletter.yaml"))
    assert dict(repaired.added) == {"sent": 60}, repaired
    statuses = _statuses(out)
    assert [statuses[str(r["customer_id"])] for r in rows] == ["sent"] * 90


def test_the_flow_hook_repairs_a_dead_send_as_its_ledger_says(site: Path) -> None:
    from types import SimpleNamespace

    from flows.recovery import on_stopped

    out, rows = _killed_mid_send(site)
    flow_run = SimpleNamespace(id="5c4f2a7e-0000-4000-8000-000000000001", parameters={
        "campaign": str(site / "campaigns" / "weekly-newsletter.yaml")})
    on_stopped(None, flow_run, SimpleNamespace(name="Crashed"))
    statuses = _statuses(out)
    assert "failed" not in statuses.values()
    assert [statuses[str(r["customer_id"])] for r in rows] == ["sent"] * 90
