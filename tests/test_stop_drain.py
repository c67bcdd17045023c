"""A sending run stopped while its workers' batches still run: how long it waits for them.

Before its repair, a stopped run waits for the batches already running in its pool, so
that the repair reads their messages' outcomes in the send ledger. That wait used to be
a silent 120 s whatever the target, and after it the pool still finished its batches
(sending on after the repair had read the ledger). Now the run says on the console that
it waits, for how many batches and how long; the bound follows the target's own send
timeout (its attempts and pauses); past it the pool's workers are stopped, so nothing
leaves after the repair: a message in flight is `unknown`, never `failed`, never sent
twice.

The real CLI sends to an aiosmtpd sink on 127.0.0.1 that stores every message from
HOLD_AT on but never answers it: each such message waits out the campaign's 2-second
timeout, so a batch of BATCH of them would run for minutes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fixtures_delivery import SinkHandler, smtp_sink
from fixtures_sending import (
    AS_OF,
    CAMPAIGN,
    cli_env,
    copy_site,
    customer_rows,
    edition_command,
    make_customers,
)

pytestmark = pytest.mark.timeout(600)

COUNT, BATCH, HOLD_AT = 300, 100, 20
TIMEOUT = 2.0   # the campaign's SMTP timeout: each unanswered message costs that much


@dataclass
class StallingSink(SinkHandler):
    """Stores every message; from message `hold_at` on, never answers (bounded)."""

    hold_at: int = 0
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.messages) >= self.hold_at:
            self.held.set()
            deadline = time.monotonic() + 300
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        return reply


def test_a_stopped_send_says_it_waits_for_its_batches_and_the_wait_follows_the_timeout(
        tmp_path: Path) -> None:
    site = copy_site(tmp_path / "site")
    campaign = site / CAMPAIGN
    path = make_customers(COUNT, tmp_path / "customers.csv", seed=41)
    email_of = {r["id"]: r["email"] for r in customer_rows(path)}
    out = tmp_path / "run"

    handler = StallingSink(hold_at=HOLD_AT)
    with smtp_sink(handler) as (port, sink):
        campaign.write_text(campaign.read_text(encoding="utf-8").replace(
            "delivery: {to: local}", f"delivery: {{to: 'smtp://127.0.0.1:{port}', "
                                     f"timeout: {TIMEOUT}, attempts: 1}}"), encoding="utf-8")
        command = [*edition_command(), "run", CAMPAIGN, "--customers", str(path),
                   "--out", str(out), "--as-of", AS_OF, "--batch-size", str(BATCH),
                   "--workers", "2", "--send", "--yes"]
        log = tmp_path / "run.log"
        with log.open("wb") as output:
            proc = subprocess.Popen(command, cwd=site, env=cli_env(),
                                    stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not handler.held.wait(0.05):
                assert proc.poll() is None, "the run ended too soon:\n" + log.read_text()
                assert time.monotonic() < deadline, "the run sent too slowly"
            os.kill(proc.pid, signal.SIGTERM)   # stopped in its own process: it repairs
            stopped = time.monotonic()
            try:
                proc.wait(300)
            except subprocess.TimeoutExpired:
                pytest.fail("the stopped run was still running 300 s later")
            took = time.monotonic() - stopped
        finally:
            handler.release.set()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        text = log.read_text()
        assert proc.returncode != 0, text

        # the console says what it waits for, and for how long: the target's bound
        said = re.search(r"waiting up to ([\d,]+) s for (\d+) running batch", text)
        assert said, text
        bound = float(said.group(1).replace(",", ""))
        assert TIMEOUT <= bound < 60, text    # one attempt of 2 s, not a fixed 120 s
        assert 1 <= int(said.group(2)) <= 2 * 2, text
        # it did not wait out the batches (each unanswered message costs 2 s, a batch
        # of them minutes): loaded machine, a generous margin above the bound
        assert took < bound + 90, (took, text)

        received = {cid for cid, email in email_of.items() if sink.received[email]}
        rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text(
            encoding="utf-8").splitlines()]
        status = {r["customer_id"]: r["status"] for r in rows}
        assert set(status) == set(email_of), text
        # a customer whose message the sink stored is never `failed`; nobody is `sent`
        # whose message did not arrive
        wrong = {cid: status[cid] for cid in received if status[cid] not in {"sent", "unknown"}}
        assert not wrong, (sorted(wrong.items())[:5], text)
        assert all(status[cid] != "sent" for cid in set(email_of) - received)
        # nothing left after the repair: the stopped workers send no more
        count = sum(sink.received.values())
        time.sleep(3 * TIMEOUT)
        assert sum(sink.received.values()) == count
