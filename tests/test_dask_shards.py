"""A lost machine on a sharded Dask send (issue 22, item 4).

`edition run --via-prefect --task-runner dask --workers 3 --send` from the command
line: the local cluster's workers read the customer file in shards (CSV with quoted
newlines), claim in a PostgreSQL ledger (the throwaway cluster), send to an aiosmtpd
sink on loopback; one worker process is killed with SIGKILL mid-send. Dask runs its
shard again on another worker. Then: no address got two messages, every customer is
`sent` in the ledger or was left claimed without an outcome (at most `in_flight` for
the killed worker), and `--resend-unknown` sends exactly those, once.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
import yaml
from conftest import AS_OF, REPO, run_cli
from fixtures_delivery import SinkHandler, smtp_sink

IN_FLIGHT = 4
CUSTOMERS = 240


def _worker(proc: psutil.Process) -> bool:
    try:
        return "multiprocessing.spawn" in " ".join(proc.cmdline())
    except psutil.Error:
        return False


@pytest.mark.slow
@pytest.mark.soak
@pytest.mark.timeout(900)
def test_a_killed_dask_worker_s_shard_is_sent_elsewhere_exactly_once(
        fresh_postgresql_url: str, tmp_path: Path) -> None:
    from edition.audience.sampledata import write_customers

    site = tmp_path / "site"
    for folder in ("campaigns", "templates", "articles", "offers", "greetings"):
        shutil.copytree(REPO / folder, site / folder)
    plain = tmp_path / "plain.csv"
    write_customers(plain, CUSTOMERS, seed=22)
    with plain.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for n, row in enumerate(rows):   # records that span lines, across the shards
        if n % 5 == 2:
            row["city"] = f'Line one\n"Two", {n}'
    customers = tmp_path / "customers.csv"
    with customers.open("w", encoding="utf-8", newline="") as handle:
        out = csv.DictWriter(handle, fieldnames=list(rows[0]))
        out.writeheader()
        out.writerows(rows)
    emails = {row["email"] for row in rows}
    by_id = {row["id"]: row["email"] for row in rows}
    assert len(emails) == CUSTOMERS

    handler = SinkHandler(delay=0.05)
    with smtp_sink(handler) as (port, sink):
        campaign_file = site / "campaigns" / "weekly-newsletter.yaml"
        campaign = yaml.safe_load(campaign_file.read_text(encoding="utf-8"))
        campaign["delivery"] = {"to": f"smtp://127.0.0.1:{port}", "in_flight": IN_FLIGHT}
        campaign_file.write_text(yaml.safe_dump(campaign, allow_unicode=True), encoding="utf-8")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PREFECT_") and k != "PYTHONPATH"}
        env |= {"EDITION_LEDGER_URL": fresh_postgresql_url,
                "PREFECT_HOME": str(tmp_path / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                "NO_PROXY": "127.0.0.1,localhost", "COLUMNS": "200", "NO_COLOR": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "run", "campaigns/weekly-newsletter.yaml",
             "--customers", str(customers), "--as-of", AS_OF, "--send", "--yes",
             "--mailing", "m1", "--via-prefect", "--task-runner", "dask", "--workers", "3",
             "--batch-size", "20", "--out", str(tmp_path / "run1")],
            cwd=site, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        output: dict[str, str] = {}
        reader = threading.Thread(target=lambda: output.update(zip(
            ("stdout", "stderr"), proc.communicate(timeout=800), strict=True)), daemon=True)
        reader.start()
        killed: list[int] = []
        try:
            deadline = time.monotonic() + 800
            while proc.poll() is None and time.monotonic() < deadline:
                if not killed and sum(sink.received.values()) >= 40:
                    workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                               if _worker(p)]
                    if workers:   # a machine is lost mid-send
                        workers[0].send_signal(signal.SIGKILL)
                        killed.append(workers[0].pid)
                time.sleep(0.05)
            reader.join(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        first = dict(sink.received)
        log = output.get("stdout", "") + output.get("stderr", "")
        assert killed, "no Dask worker was killed mid-send: " + log[-2000:]
        assert "in shards" in log, log[-3000:]
        assert proc.returncode in (0, 3), log[-3000:]
        assert max(first.values()) == 1, "an address got two messages"

        states = ledger_states(fresh_postgresql_url)
        assert len(states) == CUSTOMERS, len(states)
        left = {c for c, s in states.items() if s != "sent"}
        assert {states[c] for c in left} <= {"sending", "unknown"}
        assert len(left) <= IN_FLIGHT * len(killed), left
        sent = {by_id[c] for c, s in states.items() if s == "sent"}
        assert sent <= set(first)   # what the ledger says was sent reached the sink

        rc, stdout, stderr = run_cli(
            "run", "campaigns/weekly-newsletter.yaml", "--customers", customers,
            "--as-of", AS_OF, "--send", "--yes", "--mailing", "m1", "--resend-unknown",
            "--out", tmp_path / "run2", cwd=site,
            env={"EDITION_LEDGER_URL": fresh_postgresql_url,
                 "PREFECT_HOME": str(tmp_path / "prefect")}, timeout=600)
        assert rc == 0, stdout + stderr
        after = dict(sink.received)
    assert set(ledger_states(fresh_postgresql_url).values()) == {"sent"}
    # the rerun sent exactly the ones left without an outcome, once each; a message the
    # killed worker handed to the sink before dying is the one `--resend-unknown` repeats
    unknown = {by_id[c] for c in left}
    assert {e: after[e] - first.get(e, 0) for e in after if after[e] != first.get(e)} == {
        e: 1 for e in unknown}
    assert set(after) == emails
    assert all(after[e] == 1 for e in emails - unknown)


def ledger_states(url: str) -> dict[str, str]:
    from edition.send.ledger.postgres_schema import sends

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as db:
            return {c: s for c, s in db.execute(sa.select(sends.c.customer_id,
                                                          sends.c.state)).all()}
    finally:
        engine.dispose()
