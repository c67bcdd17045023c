"""Sender health (issue 20, part 2): a mailing's complaint and bounce rates in the report,
and preflight refusing the next send once the last mailing's complaint rate reached 0.3 %
(Gmail's and Yahoo's line), unless --force.

End to end: a real send to an aiosmtpd sink (one address answered 550 5.1.1), a
complaint about one of the messages the sink received (an ARF report made from its
bytes) ingested with `edition events ingest`, then the next mailing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fixtures_delivery import SinkHandler, smtp_sink
from fixtures_returned_mail import arf
from fixtures_sending import CAMPAIGN, copy_site, customer_rows, edition, make_customers, manifest

from edition.run.sender_health import MailingHealth, preflight_findings, report_section

DAY = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)


def test_the_lines_are_gmails_and_yahoos() -> None:
    ok = MailingHealth("a", sent=1000, complaints=0, hard_bounces=20)
    warn = MailingHealth("b", sent=1000, complaints=1)        # 0.10 %
    refuse = MailingHealth("c", sent=1000, complaints=3)      # 0.30 %
    assert (ok.level, warn.level, refuse.level) == ("ok", "warn", "refuse")
    assert MailingHealth("d", sent=1000, complaints=2).level == "warn"
    assert preflight_findings((ok, refuse), force=False) == ([], [])  # the last one counts
    errors, warnings = preflight_findings((refuse, ok), force=False)
    assert len(errors) == 1 and "0.30 %" in errors[0] and "--force" in errors[0] and not warnings
    errors, warnings = preflight_findings((refuse,), force=True)
    assert not errors and "sending anyway (--force)" in warnings[0]
    assert "0.10 %" in preflight_findings((warn,), force=False)[1][0]
    # below the minimum volume a rate over the line warns and refuses nothing
    few = MailingHealth("e", sent=999, complaints=3)
    errors, warnings = preflight_findings((few,), force=False)
    assert not errors and "fewer than 1,000 sent" in warnings[0]
    assert preflight_findings((few,), force=False, min_sent=999)[0]
    assert report_section(()) == []
    table = report_section((refuse, ok))
    assert "## Sender health" in table
    assert "| `c` | 1,000 | 0 | 0 | 0.00 % | 3 | 0.30 % | at or over 0.3 %: sends refused |" \
        in table
    assert "| `a` | 1,000 | 20 | 0 | 2.00 % | 0 | 0.00 % | ok |" in table


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The sample content, 40 customers; a complaint rate counts from 10 sent (the
    default, 1,000, is checked in its own test)."""
    root = copy_site(tmp_path / "site")
    make_customers(40, root / "customers.csv")
    min_sent(root, 10)
    return root


def min_sent(root: Path, count: int | None) -> None:
    """Set (or, None, remove) the campaign's suppression.complaints_min_sent."""
    import yaml

    path = root / CAMPAIGN
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    block = data.get("suppression") or {}
    block = {"lists": block} if isinstance(block, list | str) else dict(block)
    block.pop("complaints_min_sent", None)
    if count is not None:
        block["complaints_min_sent"] = count
    data["suppression"] = block
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


BASE = ("run", CAMPAIGN, "--customers", "customers.csv")


def first_mailing(site: Path, tmp_path: Path, *to: str) -> tuple[int, str, str]:
    """The mailing of 2026-11-23, sent into tmp_path/one (`to`: --to URL, when given)."""
    return edition(*BASE, "--out", tmp_path / "one", "--as-of", "2026-11-23", "--send",
                   "--yes", *to, cwd=site)


def complain(site: Path, tmp_path: Path, sink: SinkHandler, address: str) -> str:
    """A complaint about the message the sink received for `address` (an ARF report made
    from its bytes), ingested with `edition events ingest`; what the command said."""
    message = next(data for _, rcpts, data in sink.messages if rcpts == [address])
    report = tmp_path / "complaint.eml"
    report.write_bytes(arf(message, when=DAY))
    code, out, err = edition("events", "ingest", report, cwd=site)
    assert code == 0 and "1 complaint" in out, out + err
    return out


def test_a_complained_mailing_stops_the_next_send(site: Path, tmp_path: Path) -> None:
    people = customer_rows(site / "customers.csv")
    gone = people[5]
    handler = SinkHandler(reject={gone["email"]: f"550 5.1.1 <{gone['email']}>: no such user"})
    with smtp_sink(handler) as (port, sink):
        send = ["--send", "--yes", "--to", f"smtp://127.0.0.1:{port}"]
        base = list(BASE)
        code, out, err = first_mailing(site, tmp_path, "--to", f"smtp://127.0.0.1:{port}")
        assert code == 3, out + err    # one failed: more than max_failed 0
        assert len(sink.messages) == 39
        assert "1 suppressed" in complain(site, tmp_path, sink, people[9]["email"])

        # the next mailing: 1 complaint in 39 sent is 2.56 %, over 0.3 %: refused (exit 2)
        code, out, err = edition(*base, "--out", tmp_path / "two", "--as-of", "2026-11-30",
                                 *send, cwd=site)
        assert code == 2, out + err
        assert "sender health: mailing 2026-11-23: 1 complaint(s) in 39 sent (2.56 %)" in err
        assert "--force" in err and "Traceback" not in err
        assert len(sink.messages) == 39 and not (tmp_path / "two").exists()

        # a dry run is not refused, and its report shows the rates
        code, out, err = edition(*base, "--out", tmp_path / "dry", "--as-of", "2026-11-30",
                                 cwd=site)
        assert code == 0, out + err
        text = (tmp_path / "dry" / "report.md").read_text(encoding="utf-8")
        assert "## Sender health" in text
        assert "| `2026-11-23` | 39 | 1 | 0 | 2.56 % | 1 | 2.56 % | at or over 0.3 %: " \
               "sends refused |" in text

        # --force sends, without the complainer and the hard bounce (suppressed)
        code, out, err = edition(*base, "--out", tmp_path / "two", "--as-of", "2026-11-30",
                                 *send, "--force", cwd=site)
        assert code == 0, out + err
        rows = {r["customer_id"]: r for r in manifest(tmp_path / "two")}
        assert rows[people[9]["id"]]["reason"].startswith("suppressed: complained on 2026-11-24")
        assert rows[gone["id"]]["reason"].startswith("suppressed: bounced (hard, 5.1.1) on ")
        assert len(sink.messages) == 39 + 38
        assert "sending anyway (--force)" in (tmp_path / "two" / "report.md").read_text(
            encoding="utf-8")


def test_an_approved_send_is_refused_after_a_complained_mailing(site: Path,
                                                                tmp_path: Path) -> None:
    """`edition send` of an approved run asks sender health as `edition run --send` does:
    the approval was given on the files, not on the complaints that came back since."""
    people = customer_rows(site / "customers.csv")
    with smtp_sink(SinkHandler()) as (port, sink):
        to = ["--to", f"smtp://127.0.0.1:{port}"]
        base = list(BASE)
        code, out, err = first_mailing(site, tmp_path, *to)
        assert code == 0 and len(sink.messages) == 40, out + err
        complain(site, tmp_path, sink, people[3]["email"])

        # the next mailing, rendered and approved, then sent: refused, nothing leaves
        two = tmp_path / "two"
        code, out, err = edition(*base, "--out", two, "--as-of", "2026-11-30", *to, cwd=site)
        assert code == 0, out + err
        code, out, err = edition("approve", two, "--by", "Ann", "--yes", cwd=site)
        assert code == 0, out + err
        code, out, err = edition("send", two, "--yes", *to, cwd=site)
        assert code == 2, out + err
        assert "sender health: mailing 2026-11-23: 1 complaint(s) in 40 sent (2.50 %)" in err
        assert "--force" in err and "Traceback" not in err
        assert len(sink.messages) == 40 and not (two / "sends").exists()

        # --force sends the approved files, the complainer suppressed at send time
        code, out, err = edition("send", two, "--yes", "--force", *to, cwd=site)
        assert code == 0, out + err
        assert "sending anyway (--force)" in err
        assert len(sink.messages) == 40 + 39
        assert people[3]["email"] not in {r[0] for _, r, _ in sink.messages[40:]}


def test_the_approval_flow_refuses_before_the_pause(prefect_harness: None, site: Path,
                                                    tmp_path: Path) -> None:
    """A send-campaign run that waits for an approver asks sender health before the pause:
    nobody is asked to approve a send that would be refused; the run ends Failed with the
    reason and nothing leaves."""
    import threading

    from fixtures_sending import set_delivery
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState
    from prefect.client.schemas.filters import FlowRunFilterStateName as Name

    from flows.campaign import RunSettings, send_campaign

    people = customer_rows(site / "customers.csv")
    paused: list[object] = []
    stop = threading.Event()

    def watch() -> None:   # any pause is a failure of this test: note it, never answer it
        while not stop.wait(0.5):
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(name=Name(any_=["Paused"]))))
            if runs:
                paused.append(runs[0].id)
                return

    with smtp_sink(SinkHandler()) as (port, sink):
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}"})
        code, out, err = first_mailing(site, tmp_path)
        assert code == 0 and len(sink.messages) == 40, out + err
        complain(site, tmp_path, sink, people[7]["email"])

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            state = send_campaign(campaign=str(site / CAMPAIGN),
                                  customers=str(site / "customers.csv"), dry_run=False,
                                  confirm_send=True, return_state=True,
                                  advanced=RunSettings(out=str(tmp_path / "two"),
                                                       approval_timeout_hours=120 / 3600))
        finally:
            stop.set()
            watcher.join(30)
        assert state.is_failed(), state
        assert "sender health: mailing 2026-11-23: 1 complaint(s) in 40 sent (2.50 %)" \
            in state.message and "nothing was sent" in state.message
        assert not paused, "nobody should be asked to approve a send that is refused"
        assert len(sink.messages) == 40
        assert not (tmp_path / "two" / "approval.json").exists()
        assert not (tmp_path / "two" / "sends").exists()


def test_a_small_mailing_warns_but_is_not_refused(site: Path, tmp_path: Path) -> None:
    """One complaint in 40 sent is 2.5 %, but says little: below
    suppression.complaints_min_sent (default 1,000) the next send warns and goes."""
    min_sent(site, None)
    people = customer_rows(site / "customers.csv")
    with smtp_sink(SinkHandler()) as (port, sink):
        send = ["--send", "--yes", "--to", f"smtp://127.0.0.1:{port}"]
        base = list(BASE)
        code, out, err = first_mailing(site, tmp_path, "--to", f"smtp://127.0.0.1:{port}")
        assert code == 0 and len(sink.messages) == 40, out + err
        complain(site, tmp_path, sink, people[2]["email"])

        code, out, err = edition(*base, "--out", tmp_path / "two", "--as-of", "2026-11-30",
                                 *send, cwd=site)
        assert code == 0, out + err
        assert len(sink.messages) == 40 + 39     # the complainer is suppressed
        assert "fewer than 1,000 sent (suppression.complaints_min_sent): not refused" in (
            tmp_path / "two" / "report.md").read_text(encoding="utf-8")

        # a negative minimum is a campaign mistake, named with its file
        min_sent(site, -1)
        code, out, err = edition(*base, "--out", tmp_path / "three", *send, cwd=site)
        assert code == 2 and "complaints_min_sent must be 0 or more" in err, out + err
        assert "weekly-newsletter.yaml" in err and "Traceback" not in err
