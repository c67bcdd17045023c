"""A sending run whose folder is in S3, stopped mid-batch: its repair must not call
customers whose messages went out `failed` (design.md: the manifest tells exactly what
happened; the send ledger is the truth for what was sent).

The real CLI sends to an aiosmtpd sink on 127.0.0.1 and writes its folder to
`s3://…` on moto's server. The sink holds its reply to one message of the second batch;
the run gets SIGTERM meanwhile and repairs its folder itself. The customers' files of
the batch in flight are in S3, not in the run's local staging folder: the repair must
ask the folder's own listing and the ledger, not the local disk. The rerun then sends
nobody twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from fixtures_delivery import moto_reset, moto_url, smtp_sink  # noqa: F401 (fixture)
from fixtures_sending import (
    AS_OF,
    AWS,
    CAMPAIGN,
    cli_env,
    copy_site,
    customer_rows,
    edition_command,
    make_customers,
)
from test_crash import HoldingSink, wait_until_quiet

pytestmark = [pytest.mark.soak, pytest.mark.timeout(600)]

BUCKET = "editions"
PREFIX = "runs/stopped"
COUNT, BATCH, HOLD_AT = 400, 40, 55   # message 55 is in the second batch


def test_sigterm_mid_send_to_an_s3_folder_shows_no_sent_customer_failed(
        moto_url: str, tmp_path: Path) -> None:
    moto_reset(moto_url)
    s3: Any = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET)
    site = copy_site(tmp_path / "site")
    path = make_customers(COUNT, tmp_path / "customers.csv", seed=31)
    email_of = {r["id"]: r["email"] for r in customer_rows(path)}
    env = AWS | {"EDITION_S3_ENDPOINT_URL": moto_url}

    handler = HoldingSink(hold_at=HOLD_AT)
    with smtp_sink(handler) as (port, sink):
        command = [*edition_command(), "run", CAMPAIGN, "--customers", str(path),
                   "--out", f"s3://{BUCKET}/{PREFIX}", "--as-of", AS_OF,
                   "--batch-size", str(BATCH), "--send", "--yes",
                   "--to", f"smtp://127.0.0.1:{port}"]
        log = tmp_path / "first.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=site, env=cli_env(env),
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not handler.held.wait(0.01):
                assert proc.poll() is None, "the run ended too soon:\n" + log.read_text()
                assert time.monotonic() < deadline, "the run sent too slowly"
            os.kill(proc.pid, signal.SIGTERM)   # stopped in its own process: it repairs
            time.sleep(0.5)
            handler.release.set()
            proc.wait(240)
        finally:
            handler.release.set()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        assert proc.returncode != 0, log.read_text()
        before = wait_until_quiet(lambda: sum(sink.received.values()))
        assert HOLD_AT <= before < COUNT, (before, log.read_text())

        rows = [json.loads(line) for line in s3.get_object(
            Bucket=BUCKET, Key=f"{PREFIX}/manifest.jsonl")["Body"].read().splitlines()]
        status = {r["customer_id"]: r["status"] for r in rows}
        assert set(status) == set(email_of), log.read_text()
        received = {cid for cid, email in email_of.items() if sink.received[email]}
        wrong = {cid: status[cid] for cid in received if status[cid] not in {"sent", "unknown"}}
        assert not wrong, (f"{len(wrong)} customers who got their message shown as "
                           f"{sorted(wrong.items())[:5]}; run: {log.read_text()}")
        assert all(status[cid] != "sent" for cid in set(email_of) - received)
        # the folder lists every customer file it holds (the batch in flight's too)
        files = {rel for r in rows for rel in (r.get("files") or {}).values()}
        assert customer_files(s3) == files

        # the rerun finishes the folder and sends nobody twice
        rerun = subprocess.run(command, cwd=site, env=cli_env(env), stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=300, check=False)
        assert rerun.returncode in (0, 3), rerun.stdout + rerun.stderr
        wait_until_quiet(lambda: sum(sink.received.values()))
        assert max(sink.received.values()) == 1, "a customer got two messages"
        failed_before = {cid for cid, s in status.items() if s == "failed"}
        assert all(sink.received[email_of[cid]] == 1 for cid in failed_before)
        final = [json.loads(line) for line in s3.get_object(
            Bucket=BUCKET, Key=f"{PREFIX}/manifest.jsonl")["Body"].read().splitlines()]
        assert sorted(r["customer_id"] for r in final) == sorted(email_of)
        assert all(r["status"] in {"sent", "unknown"} for r in final), \
            [r for r in final if r["status"] not in {"sent", "unknown"}][:3]


def test_kill_9_mid_send_to_an_s3_folder_then_the_next_run(moto_url: str,
                                                           tmp_path: Path) -> None:
    """kill -9 of the whole run mid-send: nothing of it repairs; the next run on the
    folder takes it over and finishes it. Whom the dead run sent is `sent` or `unknown`
    (the ledger), never `failed`, and nobody gets two messages."""
    moto_reset(moto_url)
    s3: Any = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET)
    site = copy_site(tmp_path / "site")
    path = make_customers(COUNT, tmp_path / "customers.csv", seed=37)
    email_of = {r["id"]: r["email"] for r in customer_rows(path)}
    env = AWS | {"EDITION_S3_ENDPOINT_URL": moto_url, "EDITION_S3_LOCK_LEASE": "2"}

    handler = HoldingSink(hold_at=HOLD_AT)
    with smtp_sink(handler) as (port, sink):
        command = [*edition_command(), "run", CAMPAIGN, "--customers", str(path),
                   "--out", f"s3://{BUCKET}/{PREFIX}", "--as-of", AS_OF,
                   "--batch-size", str(BATCH), "--send", "--yes",
                   "--to", f"smtp://127.0.0.1:{port}"]
        log = tmp_path / "first.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=site, env=cli_env(env),
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not handler.held.wait(0.01):
                assert proc.poll() is None, "the run ended too soon:\n" + log.read_text()
                assert time.monotonic() < deadline, "the run sent too slowly"
            os.killpg(proc.pid, signal.SIGKILL)   # the main process and its workers
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            handler.release.set()
        before = wait_until_quiet(lambda: sum(sink.received.values()))
        assert HOLD_AT <= before < COUNT, before
        received = {cid for cid, email in email_of.items() if sink.received[email]}

        deadline = time.monotonic() + 120
        while True:   # the dead run's lease runs out, then the same command takes over
            rerun = subprocess.run(command, cwd=site, env=cli_env(env),
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                   timeout=300, check=False)
            if rerun.returncode != 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert rerun.returncode in (0, 3), rerun.stdout + rerun.stderr
        wait_until_quiet(lambda: sum(sink.received.values()))
        assert max(sink.received.values()) == 1, "a customer got two messages"
        final = [json.loads(line) for line in s3.get_object(
            Bucket=BUCKET, Key=f"{PREFIX}/manifest.jsonl")["Body"].read().splitlines()]
        status = {r["customer_id"]: r["status"] for r in final}
        assert sorted(status) == sorted(email_of)
        wrong = {cid: status[cid] for cid in received if status[cid] not in {"sent", "unknown"}}
        assert not wrong, [r for r in final if r["customer_id"] in wrong][:3]
        # the others: sent now, or `unknown` (claimed by the dead run when it was killed)
        for cid in set(email_of) - received:
            assert status[cid] in {"sent", "unknown"}, (cid, status[cid])
            assert sink.received[email_of[cid]] == (status[cid] == "sent"), cid
        assert sum(1 for s in status.values() if s == "unknown") <= 8


def customer_files(s3: Any) -> set[str]:
    found = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                             Prefix=f"{PREFIX}/"):
        for item in page.get("Contents", []):
            rel = item["Key"][len(PREFIX) + 1:]
            if rel.split("/", 1)[0] in {"html", "text", "eml", "pdf"}:
                found.add(rel)
    return found
