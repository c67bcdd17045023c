"""The frequency cap across campaigns at the moment of sending (issue 21, part 4): two
sends racing cannot both pass the cap, and campaign priorities decide who wins a capped
customer on a crowded day. Real CLI in subprocesses, an aiosmtpd sink, SQLite and a
throwaway PostgreSQL house store."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# tests/ is not a package: pytest puts it on sys.path
from cadence_content import campaign, house, people
from conftest import read_manifest
from fixtures_delivery import SinkHandler, smtp_sink

from edition.store.cap_slots import Claimant, Slot, taken_by

CAP = "frequency_cap: {max: 1, days: 7}\n"


def _popen(root: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    environment = dict(os.environ)
    environment.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                        "COLUMNS": "200", "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8",
                        **env})
    environment.pop("PREFECT_API_URL", None)
    return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=root, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            encoding="utf-8")


def _race(root: Path, port: int, env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """news-a and news-b sent at the same time to the same customers."""
    procs = {name: _popen(root, "run", f"campaigns/{name}.yaml", "--send", "--yes", "--out",
                          f"out/{name}", "--to", f"smtp://127.0.0.1:{port}", env=env)
             for name in ("news-a", "news-b")}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {out}{err}"
    return {name: read_manifest(root / "out" / name) for name in procs}


@pytest.mark.parametrize("store, in_flight", [("sqlite", 1), ("postgresql", 1),
                                               ("sqlite", 4)])
def test_two_campaigns_sending_at_once_never_pass_the_cap(
        content_tree: Callable, request: pytest.FixtureRequest, store: str,
        in_flight: int) -> None:
    # slow enough SMTP (50 ms a message) that both sends overlap: each read the ledgers
    # before the other had sent much; 4 in flight: slots taken a window at a time
    slow = {"to": "local", "in_flight": in_flight}
    customers = people(40)
    root = house(content_tree, customers, edition_yaml=CAP,
                 **{"news-a": campaign("news-a", delivery=slow),
                    "news-b": campaign("news-b", delivery=slow)})
    env: dict[str, str] = {}
    if store == "postgresql":
        url = request.getfixturevalue("fresh_postgresql_url")
        env = {"EDITION_STORE": url, "EDITION_LEDGER_URL": url}
    handler = SinkHandler()
    handler.delay = 0.05
    with smtp_sink(handler) as (port, sink):
        manifests = _race(root, port, env)
        assert sink.received, "nothing was sent"
        over = {rcpt: n for rcpt, n in sink.received.items() if n > 1}
        assert over == {}, f"the cap (1 in 7 days) was passed for {len(over)} customer(s)"
        # everyone got exactly one of the two
        assert sorted(sink.received) == sorted(p["email"] for p in customers)
    for name, rows in manifests.items():
        for row in rows:
            assert row["status"] in ("sent", "excluded"), row
            if row["status"] == "excluded":
                assert row["reason_code"] == "frequency_cap", row
                other = "news-b" if name == "news-a" else "news-a"
                assert other in row["reason"] or "frequency cap: 1 marketing" in row["reason"]
    if store == "sqlite":
        assert (root / "out" / "suppression.sqlite").is_file()   # the house store


def _approved(cli: Callable, root: Path, name: str) -> None:
    code, out, err = cli("run", f"campaigns/{name}.yaml", "--out", f"out/{name}", cwd=root)
    assert code == 0, out + err
    code, out, err = cli("approve", f"out/{name}", "--by", "Ann", "--yes", cwd=root)
    assert code == 0, out + err


def _sent(cli: Callable, root: Path, name: str, port: int) -> dict[str, dict[str, Any]]:
    code, out, err = cli("send", f"out/{name}", "--yes", "--to", f"smtp://127.0.0.1:{port}",
                         cwd=root)
    assert code == 0, out + err
    sends = list((root / "out" / name / "sends").iterdir())
    assert len(sends) == 1
    return {r["customer_id"]: r for r in read_manifest(sends[0])}


def test_the_higher_priority_campaign_wins_a_crowded_day(content_tree: Callable,
                                                         cli: Callable) -> None:
    customers = people(5)
    root = house(content_tree, customers, edition_yaml=CAP + "priority: 5\n",
                 **{"news-a": campaign("news-a", priority=9)})
    # news-b (the house's priority 5) is approved first; news-a (9) later the same day
    _approved(cli, root, "news-b")
    _approved(cli, root, "news-a")   # its dry run is not held back by news-b's plan
    assert {r["status"] for r in read_manifest(root / "out" / "news-a")} == {"rendered"}

    # news-b's preflight now shows what the cap takes from it, and for whom
    code, out, err = cli("run", "campaigns/news-b.yaml", "--out", "out/b-dry", cwd=root)
    assert code == 0, out + err
    dry = read_manifest(root / "out" / "b-dry")
    assert {r["status"] for r in dry} == {"excluded"}
    assert all(r["reason_code"] == "frequency_cap" for r in dry)
    assert all("the slot is held for campaign news-a (priority 9" in r["reason"] for r in dry)
    report = (root / "out" / "b-dry" / "report.md").read_text(encoding="utf-8")
    assert "5 × excluded: frequency cap: taken by news-a" in report

    with smtp_sink() as (port, sink):
        # news-b goes first, yet leaves the day to news-a
        rows_b = _sent(cli, root, "news-b", port)
        assert {r["status"] for r in rows_b.values()} == {"excluded"}
        assert all("news-a" in r["reason"] for r in rows_b.values())
        assert sink.messages == []
        rows_a = _sent(cli, root, "news-a", port)
        assert {r["status"] for r in rows_a.values()} == {"sent"}
        assert dict(sink.received) == {p["email"]: 1 for p in customers}
        # news-b again: the slot went to news-a (sent now), nobody gets a second one
        code, out, err = cli("run", "campaigns/news-b.yaml", "--send", "--yes", "--out",
                             "out/b-send", "--to", f"smtp://127.0.0.1:{port}", cwd=root)
        assert code == 0, out + err
        again = read_manifest(root / "out" / "b-send")
        assert {r["reason_code"] for r in again} == {"frequency_cap"}
        assert dict(sink.received) == {p["email"]: 1 for p in customers}
        # a bill is not marketing: never capped, whatever the priorities
        code, out, err = cli("run", "campaigns/bill.yaml", "--send", "--yes", "--out",
                             "out/bill", "--to", f"smtp://127.0.0.1:{port}", cwd=root)
        assert code == 0, out + err
        assert dict(sink.received) == {p["email"]: 2 for p in customers}


def test_equal_priorities_first_come_first_served(content_tree: Callable,
                                                  cli: Callable) -> None:
    """Both approved, the same priority (the house's 0): an approval holds nothing
    against an equal; the first message to leave takes the slot, and the other send
    names the campaign that won it."""
    customers = people(4)
    root = house(content_tree, customers, edition_yaml=CAP)
    _approved(cli, root, "news-b")     # approved first ...
    _approved(cli, root, "news-a")
    with smtp_sink() as (port, sink):
        rows_a = _sent(cli, root, "news-a", port)     # ... but news-a leaves first
        assert {r["status"] for r in rows_a.values()} == {"sent"}
        rows_b = _sent(cli, root, "news-b", port)
        assert {r["status"] for r in rows_b.values()} == {"excluded"}
        assert all(r["reason_code"] == "frequency_cap" and "news-a" in r["reason"]
                   for r in rows_b.values()), rows_b
        assert dict(sink.received) == {p["email"]: 1 for p in customers}


def test_a_bad_priority_stops_the_run_naming_file_and_line(content_tree: Callable,
                                                           cli: Callable) -> None:
    root = house(content_tree, people(2), edition_yaml=CAP + "priority: high\n")
    code, out, err = cli("run", "campaigns/news-a.yaml", "--out", "out/a", cwd=root)
    assert code == 2, out + err
    assert "edition.yaml" in out + err and "priority" in out + err
    assert "Traceback" not in out + err


def test_who_takes_the_slot_in_pure_logic() -> None:
    now = dt.datetime(2026, 12, 7, 10, tzinfo=dt.UTC)
    hour = dt.timedelta(hours=1)
    me = Claimant("b", "m1", 5)
    planned_high = Slot("a", "m1", 9, "planned", now - hour)
    planned_low = Slot("c", "m1", 1, "planned", now - hour)
    assert taken_by([planned_low], me, max_sends=1, days=7, now=now) is None
    reason = taken_by([planned_high], me, max_sends=1, days=7, now=now)
    assert reason is not None and reason.group == "frequency cap: taken by a"
    # a plan expires after a day; a send counts for the cap's days
    assert taken_by([planned_high._replace(at=now - 25 * hour)], me, max_sends=1, days=7,
                    now=now) is None
    sent_low = Slot("c", "m0", 1, "sent", now - 48 * hour)
    assert taken_by([sent_low], me, max_sends=1, days=7, now=now) is not None
    assert taken_by([sent_low], me, max_sends=2, days=7, now=now) is None
    assert taken_by([sent_low], me, max_sends=1, days=1, now=now) is None
    # an equal priority's plan holds nothing (the first to send wins); my own mailing's
    # slot never counts
    assert taken_by([Slot("x", "m1", 5, "planned", now - hour)], me, max_sends=1, days=7,
                    now=now) is None
    assert taken_by([Slot("x", "m1", 5, "sent", now - hour)], me, max_sends=1, days=7,
                    now=now) is not None
    assert taken_by([Slot("b", "m1", 5, "sent", now)], me, max_sends=1, days=7,
                    now=now) is None
