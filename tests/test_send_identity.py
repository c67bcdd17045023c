"""One message per customer per mailing per channel, whatever happens between runs.

The real CLI sends the sample campaign to an aiosmtpd sink on loopback. Each test is one
finding of the send-trust issue, reproduced on the code before the fix: a rerun on
another day, a typo fixed between a crash and the rerun, the same server under another
name, outcomes left uncommitted by pool workers, and a summary that counted old sends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from fixtures_delivery import SinkHandler, smtp_sink
from fixtures_sending import (  # noqa: F401 (fixtures)
    NAME,
    cli_env,
    customer_rows,
    customers,
    edition,
    edition_command,
    ledger_file,
    manifest,
    run_args,
    sink_total,
    site,
)

from edition.send.ledger.sqlite import SendLedger


def send_args(path: Path, out: Path, port: int, *extra: object, as_of: str | None = None,
              host: str = "127.0.0.1") -> list[object]:
    args = ["run", "campaigns/weekly-newsletter.yaml", "--customers", path, "--out", out,
            "--send", "--yes", "--to", f"smtp://{host}:{port}", *extra]
    return [*args, "--as-of", as_of] if as_of else args


def kill_mid_send(site: Path, args: list[object], sink: SinkHandler, after: int,
                  log: Path) -> None:
    """Start a send and SIGKILL its whole process group once the sink holds `after`."""
    with log.open("wb") as out:
        proc = subprocess.Popen([*edition_command(), *map(str, args)], cwd=site, env=cli_env(),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while sink_total(sink) < after:
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the send did not get under way"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)


def settle(sink: SinkHandler) -> int:
    """The sink's count once no message has arrived for a second (bounded)."""
    last, since, deadline = sink_total(sink), time.monotonic(), time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = sink_total(sink)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > 1.0:
            break
    return last


def test_a_rerun_on_another_day_finishes_the_mailing_instead_of_mailing_everyone_again(
        site: Path, customers: Callable, tmp_path: Path) -> None:
    """Finding 1: send with --as-of 11-23, killed; rerun the next day: 120 messages before."""
    path = customers(200)
    handler = SinkHandler(delay=0.01)
    with smtp_sink(handler) as (port, sink):
        out = tmp_path / "run"
        kill_mid_send(site, send_args(path, out, port, as_of="2026-11-23"), sink, 40,
                      tmp_path / "first.log")
        before = settle(sink)
        assert 40 <= before < 200
        # another day named while the mailing is unfinished: refused, nothing sent
        code, stdout, stderr = edition(*send_args(path, tmp_path / "r2", port,
                                                  as_of="2026-11-24"), cwd=site)
        assert code == 1, stdout + stderr
        assert "mailing 2026-11-23" in stderr and "unfinished" in stderr
        assert "--new-mailing" in stderr and "Traceback" not in stderr
        assert sink_total(sink) == before
        # rerun after midnight, no --as-of: the unfinished mailing is resumed with its date
        code, stdout, stderr = edition(*send_args(path, tmp_path / "r3", port), cwd=site)
        assert code in (0, 3), stdout + stderr
        assert "resuming the unfinished mailing 2026-11-23" in stderr
        settle(sink)
    email_of = {r["id"]: r["email"] for r in customer_rows(path)}
    rows = manifest(tmp_path / "r3")
    assert [r["customer_id"] for r in rows] == list(email_of)
    unknown = [r for r in rows if r["status"] == "unknown"]
    assert len(unknown) <= 2  # at most the messages in flight at the kill
    for row in rows:
        got = sink.received[email_of[row["customer_id"]]]
        assert got == 1 if row["status"] == "sent" else got in (0, 1), row
    assert {r["mailing"] for r in rows} == {"2026-11-23"}


def test_a_new_mailing_while_one_is_unfinished_needs_new_mailing(
        site: Path, customers: Callable, tmp_path: Path) -> None:
    path = customers(200)
    with smtp_sink(SinkHandler(delay=0.01)) as (port, sink):
        kill_mid_send(site, send_args(path, tmp_path / "a", port, "--mailing", "spring"), sink,
                      30, tmp_path / "a.log")
        before = settle(sink)
        code, _, stderr = edition(*send_args(path, tmp_path / "b", port, "--mailing", "summer",
                                             "--limit", 10), cwd=site)
        assert code == 1 and "mailing spring" in stderr and "not yet sent" in stderr
        code, stdout, stderr = edition(*send_args(path, tmp_path / "c", port, "--mailing",
                                                  "summer", "--limit", 10, "--new-mailing"),
                                       cwd=site)
        assert code == 0, stdout + stderr
        assert settle(sink) == before + 10
    with SendLedger(ledger_file(site), readonly=True) as ledger:
        status = {m.mailing: m.status for m in ledger.mailings(NAME)}
    assert status == {"spring": "open", "summer": "finished"}


def test_a_typo_fixed_between_a_crash_and_the_rerun_mails_nobody_twice(
        site: Path, customers: Callable, tmp_path: Path) -> None:
    """Finding 2: fix one word in an article after the crash: 39 got a second message."""
    path = customers(120)
    with smtp_sink(SinkHandler(delay=0.01)) as (port, sink):
        kill_mid_send(site, send_args(path, tmp_path / "run", port, as_of="2026-11-23"), sink,
                      30, tmp_path / "first.log")
        settle(sink)
        for article in (site / "articles").glob("*.md"):
            text = article.read_text(encoding="utf-8")
            article.write_text(text.replace(" the ", " teh ", 1), encoding="utf-8")
        code, stdout, stderr = edition(*send_args(path, tmp_path / "run2", port,
                                                  as_of="2026-11-23"), cwd=site)
        assert code in (0, 3), stdout + stderr
        settle(sink)
    assert max(sink.received.values()) == 1
    rows = manifest(tmp_path / "run2")
    already = [r for r in rows if r["reason_code"] == "already_sent"]
    assert already and all("already sent in mailing 2026-11-23 at" in r["reason"]
                           for r in already)
    assert any(r["content_changed"] for r in already)  # the edit shows, and is not re-sent


def test_the_same_server_under_another_name_is_the_same_channel(
        site: Path, customers: Callable, tmp_path: Path) -> None:
    """Finding 3: smtp://localhost:P after smtp://127.0.0.1:P sent all 50 again."""
    path = customers(50)
    with smtp_sink() as (port, sink):
        code, stdout, stderr = edition(*send_args(path, tmp_path / "a", port,
                                                  as_of="2026-11-23"), cwd=site)
        assert code == 0, stdout + stderr
        assert "50 sent now" in stdout
        code, stdout, stderr = edition(*send_args(path, tmp_path / "b", port, host="localhost",
                                                  as_of="2026-11-23"), cwd=site)
        assert code == 0, stdout + stderr
        # the summary tells the truth: nothing new left the machine
        assert "0 sent now, 50 already sent in mailing 2026-11-23" in stdout
    assert sink_total(sink) == 50
    report = (tmp_path / "b" / "report.md").read_text(encoding="utf-8")
    assert "0 sent now, 50 already sent in mailing 2026-11-23" in report


def test_a_clean_pool_run_commits_every_outcome(site: Path, customers: Callable,
                                                tmp_path: Path) -> None:
    """Finding 4: 2 rows left `sending` after a clean pooled run; --resend-unknown re-sent."""
    path = customers(2000)
    with smtp_sink() as (port, sink):
        code, stdout, stderr = edition(*send_args(path, tmp_path / "a", port, "--workers", 2,
                                                  as_of="2026-11-23"), cwd=site, timeout=300)
        assert code == 0, stdout + stderr
        with SendLedger(ledger_file(site), readonly=True) as ledger:
            counts = ledger.counts(NAME)
        assert counts["sending"] == 0 and counts["sent"] == 2000
        code, stdout, stderr = edition(*send_args(path, tmp_path / "b", port, "--workers", 2,
                                                  "--resend-unknown", as_of="2026-11-23"),
                                       cwd=site, timeout=300)
        assert code == 0, stdout + stderr
        assert "0 sent now, 2,000 already sent" in stdout
    assert sink_total(sink) == 2000 and max(sink.received.values()) == 1


def test_every_customer_failing_exits_3_and_max_failed_allows_some(
        site: Path, customers: Callable, tmp_path: Path) -> None:
    path = customers(20)
    reject = {r["email"]: "550 5.1.1 no such user" for r in customer_rows(path)}
    with smtp_sink(SinkHandler(reject=reject)) as (port, _):
        code, stdout, stderr = edition(*send_args(path, tmp_path / "a", port,
                                                  as_of="2026-11-23"), cwd=site)
        assert code == 3, stdout + stderr
        assert "20 customer(s) failed" in stderr
        campaign = site / "campaigns" / "weekly-newsletter.yaml"
        campaign.write_text(campaign.read_text(encoding="utf-8") + 'max_failed: "100%"\n',
                            encoding="utf-8")
        code, stdout, stderr = edition(*send_args(path, tmp_path / "b", port,
                                                  "--mailing", "again"), cwd=site)
        assert code == 0, stdout + stderr
