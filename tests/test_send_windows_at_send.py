"""Send windows at the moment of sending (issue 21, part 4): an approved run sent later
re-checks each customer's window in their `timezone` (and their preferred hour), defers
instead of mailing at 3 a.m., and a later send — or the next scheduled Prefect run of the
mailing — sends the deferred ones exactly once. Real CLI, an aiosmtpd sink, Prefect's
test harness, a DST day."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

# tests/ is not a package: pytest puts it on sys.path
from cadence_content import house, people
from conftest import read_manifest
from fixtures_delivery import smtp_sink

from edition.content.house import SendWindow
from edition.run.cadence import SendTimeWindows


def _window_around(now: dt.datetime, zone: str, before: int, after: int) -> str:
    local = now.astimezone(zoneinfo.ZoneInfo(zone))
    return (f"send_window: {{start: \"{(local - dt.timedelta(hours=before)):%H:%M}\", "
            f"end: \"{(local + dt.timedelta(hours=after)):%H:%M}\"}}\n")


def _sends(root: Path, run: str) -> list[Path]:
    return sorted((root / "out" / run / "sends").iterdir(), key=lambda p: p.stat().st_mtime)


def test_an_approved_send_defers_customers_outside_their_window(content_tree: Callable,
                                                                cli: Callable) -> None:
    # customers 12 hours apart: a window around UTC's "now" leaves UTC+12 outside it
    here, there = "Etc/GMT", "Etc/GMT-12"          # UTC and UTC+12 (POSIX signs)
    customers = [{**p, "timezone": here if i % 2 == 0 else there}
                 for i, p in enumerate(people(6))]
    customers[4]["timezone"] = ""                 # no zone: the window's own (UTC)
    root = house(content_tree, customers)
    # a spreadsheet's export: BOM, semicolons, CRLF
    lines = [";".join(customers[0])] + [";".join(str(v) for v in c.values())
                                        for c in customers]
    (root / "data" / "customers.csv").write_bytes(
        b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    # approved while no window was set (the dry run defers nobody anyway) ...
    code, out, err = cli("run", "campaigns/news-a.yaml", "--out", "out/a", cwd=root)
    assert code == 0, out + err
    code, out, err = cli("approve", "out/a", "--by", "Ann", "--yes", cwd=root)
    assert code == 0, out + err
    # ... then the house gets a window: sent now, UTC+12 customers are in their night
    (root / "edition.yaml").write_text(
        _window_around(dt.datetime.now(dt.UTC), here, 2, 2), encoding="utf-8")
    with smtp_sink() as (port, sink):
        to = ("--to", f"smtp://127.0.0.1:{port}")
        code, out, err = cli("send", "out/a", "--yes", *to, cwd=root)
        assert code == 0, out + err
        rows = {r["customer_id"]: r for r in read_manifest(_sends(root, "a")[0])}
        assert {k: r["status"] for k, r in rows.items()} == {
            "c000": "sent", "c001": "excluded", "c002": "sent", "c003": "excluded",
            "c004": "sent", "c005": "excluded"}
        for cid in ("c001", "c003", "c005"):
            reason = rows[cid]["reason"]
            assert rows[cid]["reason_code"] == "deferred"
            assert reason.startswith("deferred until ") and reason.endswith("(at send time)")
            assert reason.split()[2].endswith("+12:00"), reason
        assert sorted(sink.received) == ["c000@example.com", "c002@example.com",
                                         "c004@example.com"]

        # later, the window is open everywhere: the same approved run sent again sends
        # the deferred ones, and nobody twice
        (root / "edition.yaml").write_text(
            _window_around(dt.datetime.now(dt.UTC), here, 1, 13), encoding="utf-8")
        code, out, err = cli("send", "out/a", "--yes", *to, cwd=root)
        assert code == 0, out + err
        later = {r["customer_id"]: r for r in read_manifest(_sends(root, "a")[-1])}
        assert {k: r["status"] for k, r in later.items()} == {f"c{i:03d}": "sent"
                                                             for i in range(6)}
        assert {k for k, r in later.items() if r.get("reason_code") == "already_sent"} == {
            "c000", "c002", "c004"}
        assert dict(sink.received) == {f"c{i:03d}@example.com": 1 for i in range(6)}


def test_send_time_windows_on_the_days_clocks_go_back() -> None:
    """New York leaves DST on 2026-11-01 at 02:00 local, Berlin on 2026-10-25 at 03:00:
    the next opening is 09:00 on the wall clock, in the offset of that moment."""
    window = SendWindow(start="09:00", end="20:00", timezone="UTC")
    fields = {"ny": {"timezone": "America/New_York"}, "be": {"timezone": "Europe/Berlin"},
              "tokyo": {"timezone": "Asia/Tokyo"}, "bad": {"timezone": "Mars/Olympus"}}
    # 2026-11-01 05:30 UTC: 01:30 EST in New York (after the switch back), 06:30 in Berlin
    at = SendTimeWindows(dt.datetime(2026, 11, 1, 5, 30, tzinfo=dt.UTC), window, fields)
    assert str(at.deferred("ny")).startswith("deferred until 2026-11-01T09:00:00-05:00")
    assert str(at.deferred("be")).startswith("deferred until 2026-11-01T09:00:00+01:00")
    assert at.deferred("tokyo") is None                     # 14:30 there
    assert str(at.deferred("bad")).startswith("deferred until 2026-11-01T09:00:00+00:00")
    assert "unknown" in str(at.deferred("bad"))
    assert str(at.deferred("nobody")).startswith("deferred until 2026-11-01T09:00:00+00:00")
    # 2026-10-25 06:30 UTC: 07:30 CET in Berlin (switched at 01:00 UTC), 02:30 EDT in NY
    at = SendTimeWindows(dt.datetime(2026, 10, 25, 6, 30, tzinfo=dt.UTC), window, fields)
    assert str(at.deferred("be")).startswith("deferred until 2026-10-25T09:00:00+01:00")
    assert str(at.deferred("ny")).startswith("deferred until 2026-10-25T09:00:00-04:00")
    # a preferred hour waits too, in the customer's zone
    hour = SendTimeWindows(dt.datetime(2026, 11, 1, 13, 30, tzinfo=dt.UTC), None,
                           {"ny": {"timezone": "America/New_York", "preferred_hour": 10}})
    assert str(hour.deferred("ny")).startswith("deferred until 2026-11-01T10:00:00-05:00")


def test_the_next_prefect_run_sends_the_deferred_exactly_once_across_dst(
        prefect_harness: None, content_tree: Callable[..., Path]) -> None:
    """Two runs of the send-campaign flow on 2026-11-01 (New York's DST ends at 06:00
    UTC): the 13:30 UTC run sends Berlin (14:30) and defers New York (08:30 EST, not
    09:30 as it would have been in EDT) until 09:00-05:00; the 14:05 UTC run sends New
    York, and nobody twice."""
    from flows.campaign import RunSettings, send_campaign

    customers = [{**p, "timezone": "America/New_York" if i % 2 else "Europe/Berlin"}
                 for i, p in enumerate(people(6))]
    root = house(content_tree, customers,
                 edition_yaml="send_window: {start: \"09:00\", end: \"20:00\"}\n")
    results: list[dict[str, Any]] = []
    with smtp_sink() as (port, sink):
        for n, started in enumerate(("2026-11-01T13:30:00+00:00",
                                     "2026-11-01T14:05:00+00:00")):
            state = send_campaign(
                campaign=str(root / "campaigns" / "news-a.yaml"), dry_run=False,
                confirm_send=True, to=f"smtp://127.0.0.1:{port}", mailing="nov-1",
                return_state=True,
                advanced=RunSettings(out=str(root / "out" / f"run{n}"), started=started,
                                     review_before_send=False))
            assert state.is_completed(), state
            results.append({r["customer_id"]: r for r in read_manifest(
                root / "out" / f"run{n}")})
            if n == 0:
                assert sorted(sink.received) == [f"c{i:03d}@example.com" for i in (0, 2, 4)]
        first, second = results
        for cid in ("c001", "c003", "c005"):
            assert first[cid]["status"] == "excluded"
            assert first[cid]["reason"].startswith(
                "deferred until 2026-11-01T09:00:00-05:00"), first[cid]["reason"]
            assert second[cid]["status"] == "sent" and not second[cid].get("reason_code")
        for cid in ("c000", "c002", "c004"):
            assert first[cid]["status"] == "sent"
            assert second[cid]["reason_code"] == "already_sent"
        assert dict(sink.received) == {f"c{i:03d}@example.com": 1 for i in range(6)}
