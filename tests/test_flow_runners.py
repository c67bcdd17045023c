"""send-campaign on Prefect's test server: the task runner does not change the output,
bad parameters stop the run before any work, and a run killed mid-way is repaired by the
next run of the campaign (flows/campaign.py, flows/recovery.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

STARTED = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
AS_OF = dt.date(2026, 11, 2)


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def files_of(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.parent != out}


def test_thread_process_and_dask_runners_give_identical_output(
        sample_root: Path, sample_customers: Path, tmp_path: Path) -> None:
    from flows.campaign import RunSettings, send_campaign

    outs = {}
    for runner in ("thread", "process", "dask"):
        out = outs[runner] = tmp_path / runner
        result = send_campaign(
            campaign=str(sample_root / "campaigns" / "weekly-newsletter.yaml"),
            customers=str(sample_customers), as_of=AS_OF,
            advanced=RunSettings(out=str(out), batch_size=100, task_runner=runner, workers=2,
                                 run_id="same-run", started=STARTED))
        assert result["counts"] == {"rendered": 300}, runner
    thread = outs.pop("thread")
    assert len(rows_of(thread)) == 300
    for runner, out in outs.items():
        assert rows_of(out) == rows_of(thread), runner
        assert files_of(out) == files_of(thread), runner  # eml too: same clock, same bytes
        assert (out / "versions.json").read_bytes() == (thread / "versions.json").read_bytes()


def test_sending_without_confirmation_is_refused_before_any_work(
        sample_root: Path, tmp_path: Path) -> None:
    from flows.campaign import RunSettings, send_campaign

    out = tmp_path / "refused"
    state = send_campaign(campaign=str(sample_root / "campaigns" / "weekly-newsletter.yaml"),
                          dry_run=False, advanced=RunSettings(out=str(out)),
                          return_state=True)
    assert state.is_failed()
    assert "dry_run off AND confirm_send on" in state.message
    state = send_campaign(campaign=str(sample_root / "campaigns" / "weekly-newsletter.yaml"),
                          limit=-1, advanced=RunSettings(out=str(out)), return_state=True)
    assert state.is_failed() and "limit" in state.message
    assert not out.exists()


SCRIPT = """
import sys
from flows.campaign import RunSettings, send_campaign

if __name__ == "__main__":
    send_campaign(campaign=sys.argv[1], customers=sys.argv[2],
                  advanced=RunSettings(out=sys.argv[3], batch_size=20))
"""


def test_a_run_killed_mid_way_is_repaired_by_the_next_run(
        sample_root: Path, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from edition.audience.sampledata import write_customers
    from flows.campaign import RunSettings, send_campaign

    customers = tmp_path / "customers-3000.csv"
    write_customers(customers, 3000, seed=3)
    campaign = str(sample_root / "campaigns" / "weekly-newsletter.yaml")
    killed = tmp_path / "runs" / "killed"
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = subprocess.Popen([sys.executable, str(script), campaign, str(customers),
                             str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            manifest = killed / "manifest.jsonl"
            if manifest.exists() and manifest.read_bytes().count(b"\n") >= 100:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run did not get under way"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    info = json.loads((killed / "run.json").read_text())
    assert info["status"] == "running" and info["flow_run_id"]

    # the next run of the campaign (a sibling folder) repairs the dead one first
    send_campaign(campaign=campaign, customers=str(customers), limit=10,
                  advanced=RunSettings(out=str(tmp_path / "runs" / "next")))
    rows = rows_of(killed)
    assert len(rows) == 3000
    assert [r["line"] for r in rows] == list(range(2, 3002))
    done = [r for r in rows if r["status"] == "rendered"]
    assert len(done) >= 100 and rows[:len(done)] == done
    assert {(r["status"], r["reason"]) for r in rows[len(done):]} == {
        ("failed", "run interrupted")}
    named = {rel for r in rows for rel in r["files"].values()}
    assert set(files_of(killed)) == named
    assert json.loads((killed / "run.json").read_text())["status"] == "interrupted"
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(info["flow_run_id"]).state
    assert state.is_crashed() and "output made consistent" in state.message
