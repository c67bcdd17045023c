"""Frequency caps, the global holdout and send windows across campaigns (issue 21, part 4):
edition.yaml at the content root, the send history read from the ledgers, through the
real CLI, an aiosmtpd sink and a throwaway PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

# tests/ is not a package: pytest puts it on sys.path
from cadence_content import campaign, house, people
from conftest import read_manifest, write_customers_file
from fixtures_delivery import smtp_sink

from edition.audience.frequency import cap_reason, preference_reason
from edition.audience.global_holdout import held_out
from edition.audience.windows import deferral, next_opening
from edition.content.house import FrequencyCap, SendWindow

CAP = "frequency_cap: {max: 1, days: 7}\n"


def send(cli: Callable, root: Path, name: str, out: str, *args: str,
         env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    code, stdout, stderr = cli("run", f"campaigns/{name}.yaml", "--send", "--yes", "--out",
                               out, *args, cwd=root, env=env)
    assert code == 0, stdout + stderr
    return read_manifest(root / out)


def statuses(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {r["customer_id"]: r["status"] for r in rows}


# -- edition.yaml -----------------------------------------------------------------------


def test_house_settings_mistakes_stop_the_run_naming_file_and_line(
        content_tree: Callable, cli: Callable) -> None:
    root = house(content_tree, people(3), edition_yaml=(
        "# the house\n"
        "frequency_cap: {max: three, days: 7}\n"
        "send_window: {start: \"25:00\", end: \"20:00\"}\n"
        "global_holdout: {percent: 80}\n"
        "frequncy: 2\n"))
    code, out, err = cli("run", "campaigns/news-a.yaml", "--out", "out/x", cwd=root)
    assert code == 2, out + err
    assert "Traceback" not in err
    assert "edition.yaml:2: frequency_cap.max must be a whole number" in err
    assert "edition.yaml:3: send_window.start '25:00' must be a time of day" in err
    assert "edition.yaml:4: global_holdout.percent 80 must be a number from 0 to 50" in err
    assert "edition.yaml:5: unknown key 'frequncy'" in err
    assert not (root / "out" / "x").exists()   # nothing rendered, nothing written
    for verb in (("validate",), ("preview", "--customer", "c000")):
        code, out, err = cli(verb[0], "campaigns/news-a.yaml", *verb[1:], cwd=root)
        assert code == 2 and "edition.yaml:5: unknown key 'frequncy'" in err, out + err
    # not YAML, not UTF-8, not a mapping: each one line naming the file
    for text, said in ((b"frequency_cap: {max: 1\n", "edition.yaml:2: invalid YAML"),
                       (b"# caf\xe9\nfrequency_cap: off\n", "edition.yaml:1: edition.yaml is "
                                                        "not UTF-8"),
                       (b"- 1\n- 2\n", "edition.yaml:1: edition.yaml must be a mapping")):
        (root / "edition.yaml").write_bytes(text)
        code, out, err = cli("run", "campaigns/news-a.yaml", "--out", "out/x", cwd=root)
        assert code == 2 and said in err and "Traceback" not in err, out + err


def test_a_campaigns_own_cap_is_checked_with_its_line(content_tree: Callable,
                                                     cli: Callable) -> None:
    root = house(content_tree, people(3), edition_yaml=CAP,
                 odd={**__import__("cadence_content").campaign("odd"),
                      "frequency_cap": {"max": 2, "dayz": 3}})
    code, out, err = cli("run", "campaigns/odd.yaml", "--out", "out/x", cwd=root)
    assert code == 2, out + err
    assert "campaigns/odd.yaml:" in err and "unknown key 'dayz'" in err
    assert "must be true or false" not in err


# -- the frequency cap across campaigns --------------------------------------------------


def test_cap_spans_campaigns_on_smtp_and_exempts_transactional_mail(
        content_tree: Callable, cli: Callable) -> None:
    customers = people(6)
    root = house(content_tree, customers, edition_yaml=CAP)
    with smtp_sink() as (port, sink):
        to = ("--to", f"smtp://127.0.0.1:{port}")
        first = send(cli, root, "news-a", "out/a", *to)
        assert set(statuses(first).values()) == {"sent"}
        assert len(sink.messages) == 6

        # the dry run of the next campaign already shows what the cap takes
        code, out, err = cli("run", "campaigns/news-b.yaml", "--out", "out/b-dry", cwd=root)
        assert code == 0, out + err
        dry = read_manifest(root / "out" / "b-dry")
        assert {r["status"] for r in dry} == {"excluded"}
        assert all(r["reason"].startswith("frequency cap: 1 marketing message(s) in the last "
                                          "7 days (max 1)") for r in dry)
        assert all(r["reason_code"] == "frequency_cap" for r in dry)
        report = (root / "out" / "b-dry" / "report.md").read_text(encoding="utf-8")
        assert "6 × excluded: frequency cap: max 1 in 7 days" in report

        second = send(cli, root, "news-b", "out/b", *to)
        assert set(statuses(second).values()) == {"excluded"}
        assert len(sink.messages) == 6       # nothing more went out

        # a bill is not marketing: never capped
        bills = send(cli, root, "bill", "out/bill", *to)
        assert set(statuses(bills).values()) == {"sent"}
        assert len(sink.messages) == 12
        assert all(n == 2 for n in sink.received.values())

        # the bills do not count towards the cap: a campaign allowing 2 sends once more
        (root / "campaigns" / "news-b.yaml").write_text(
            (root / "campaigns" / "news-b.yaml").read_text(encoding="utf-8")
            + "frequency_cap: {max: 2, days: 7}\n", encoding="utf-8")
        third = send(cli, root, "news-b", "out/b2", *to, "--mailing", "second")
        assert set(statuses(third).values()) == {"sent"}
        assert len(sink.messages) == 18


def test_cap_counts_only_the_window_and_not_the_mailing_being_resent(
        content_tree: Callable, cli: Callable) -> None:
    root = house(content_tree, people(4), edition_yaml=CAP)
    send(cli, root, "news-a", "out/a")
    # the same mailing again: the ledger says "already sent", the cap does not interfere
    again = send(cli, root, "news-a", "out/a2", "--mailing", dt.date.today().isoformat())
    assert {r["status"] for r in again} == {"sent"}
    assert all(r["reason_code"] == "already_sent" for r in again)
    # a campaign may turn the house's cap off
    (root / "campaigns" / "news-b.yaml").write_text(
        (root / "campaigns" / "news-b.yaml").read_text(encoding="utf-8")
        + "frequency_cap: off\n", encoding="utf-8")
    assert set(statuses(send(cli, root, "news-b", "out/b")).values()) == {"sent"}


def test_cap_reads_a_shared_postgresql_ledger(content_tree: Callable, cli: Callable,
                                              fresh_postgresql_url: str) -> None:
    root = house(content_tree, people(5), edition_yaml="frequency_cap: {max: 1, days: 30}\n")
    env = {"EDITION_LEDGER_URL": fresh_postgresql_url}
    send(cli, root, "news-a", "out/a", env=env)
    assert not list((root / "out").glob("*/ledger.sqlite"))   # PostgreSQL it was
    second = send(cli, root, "news-b", "out/b", env=env)
    assert {r["reason_code"] for r in second} == {"frequency_cap"}
    assert set(statuses(send(cli, root, "bill", "out/bill", env=env)).values()) == {"sent"}


def test_cap_and_preferences_in_pure_logic() -> None:
    now = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
    cap = FrequencyCap(max=2, days=7)
    day = dt.timedelta(days=1)
    assert cap_reason(cap, [now - day], now) is None
    assert cap_reason(cap, [now - day, now - 8 * day], now) is None   # outside the window
    held = cap_reason(cap, [now - day, now - 6 * day], now)
    assert held is not None and held.code == "frequency_cap"
    assert "2 marketing message(s) in the last 7 days (max 2), last sent 2026-03-09" in held
    assert cap_reason(FrequencyCap(max=0, days=1), [], now) is not None   # max 0: none
    monthly = preference_reason("monthly", [now - 20 * day], now)
    assert monthly == "frequency: monthly, last sent 2026-02-18"
    assert preference_reason("weekly", [now - 20 * day], now) is None
    assert preference_reason("every", [now - day], now) is None


# -- the global holdout ------------------------------------------------------------------


def test_global_holdout_is_stable_and_never_touches_transactional_mail(
        content_tree: Callable, cli: Callable) -> None:
    customers = people(300)
    root = house(content_tree, customers,
                 edition_yaml="global_holdout: {percent: 10, salt: acme-2027}\n")
    code, out, err = cli("run", "campaigns/news-a.yaml", "--out", "out/a", cwd=root)
    assert code == 0, out + err
    rows = read_manifest(root / "out" / "a")
    held = {r["customer_id"] for r in rows if r["reason_code"] == "holdout"}
    assert 10 <= len(held) <= 60
    assert all(r["status"] == "excluded" and r["reason"].startswith("holdout (global")
               for r in rows if r["customer_id"] in held)
    assert not any(list((root / "out" / "a" / "html").glob(f"{cid}-*")) for cid in held)

    # reordered and grown: the same customers are held out, in another campaign too
    grown = customers + people(400)[300:]
    random.Random(5).shuffle(grown)
    write_customers_file(root / "data" / "customers.csv", grown)
    code, out, err = cli("run", "campaigns/news-b.yaml", "--out", "out/b", cwd=root)
    assert code == 0, out + err
    again = {r["customer_id"] for r in read_manifest(root / "out" / "b")
             if r["reason_code"] == "holdout"}
    assert held == again & {c["id"] for c in customers}

    code, out, err = cli("run", "campaigns/bill.yaml", "--out", "out/bill", cwd=root)
    assert code == 0, out + err
    assert {r["status"] for r in read_manifest(root / "out" / "bill")} == {"rendered"}


def test_global_holdout_share_at_20000_customers() -> None:
    ids = [str(10**18 + i * 7919) for i in range(20_000)]
    share = sum(held_out(5, "house", cid) for cid in ids) / len(ids)
    assert abs(share - 0.05) < 0.01
    assert sum(held_out(5, "other salt", cid) != held_out(5, "house", cid)
               for cid in ids) > 500   # a new salt draws a new group


# -- send windows ------------------------------------------------------------------------


def window(start: str, end: str, zone: str = "UTC") -> SendWindow:
    return SendWindow.model_validate({"start": start, "end": end, "timezone": zone})


def test_window_in_the_customers_zone_across_a_dst_change() -> None:
    w = window("09:00", "20:00")
    paris = {"timezone": "Europe/Paris"}
    # 29 March 2026: Paris springs forward at 02:00 UTC+1 -> 03:00 UTC+2
    before = dt.datetime(2026, 3, 28, 19, 30, tzinfo=dt.UTC)   # 20:30 in Paris (UTC+1)
    until, reason = deferral(w, paris, before)  # type: ignore[misc]
    assert until == dt.datetime(2026, 3, 29, 9, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    assert until.utcoffset() == dt.timedelta(hours=2)          # the new offset, 07:00 UTC
    assert reason.startswith("deferred until 2026-03-29T09:00:00+02:00")
    assert deferral(w, paris, dt.datetime(2026, 3, 29, 7, 0, tzinfo=dt.UTC)) is None
    assert deferral(w, paris, dt.datetime(2026, 3, 29, 6, 59, tzinfo=dt.UTC)) is not None
    # the same instant is daytime in New York and night in Tokyo
    noon_ny = dt.datetime(2026, 3, 29, 16, 0, tzinfo=dt.UTC)
    assert deferral(w, {"timezone": "America/New_York"}, noon_ny) is None
    tokyo = deferral(w, {"timezone": "Asia/Tokyo"}, noon_ny)
    assert tokyo is not None and tokyo[0].isoformat() == "2026-03-30T09:00:00+09:00"
    # a window across midnight, and a start inside the spring-forward gap
    night = window("22:00", "06:00")
    assert deferral(night, {}, dt.datetime(2026, 1, 1, 23, tzinfo=dt.UTC)) is None
    assert deferral(night, {}, dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)) is not None
    gap = next_opening(window("02:30", "05:00"), before, zoneinfo.ZoneInfo("Europe/Paris"))
    assert gap.isoformat() == "2026-03-29T03:30:00+02:00"
    # an unknown or hostile zone falls back to the window's own, and says so
    odd = deferral(window("09:00", "20:00", "Europe/London"), {"timezone": "../../etc/passwd"},
                   dt.datetime(2026, 7, 1, 3, tzinfo=dt.UTC))
    assert odd is not None and "unknown, Europe/London used" in odd[1]


def test_deferred_customers_are_sent_later_exactly_once(content_tree: Callable,
                                                       cli: Callable) -> None:
    # Two customers whose local times now are 12 hours apart: a window around the
    # first one's "now" leaves the second one outside it.
    now = dt.datetime.now(dt.UTC)
    here, there = "Etc/GMT", "Etc/GMT-12"          # UTC and UTC+12 (POSIX signs)
    local = now.astimezone(zoneinfo.ZoneInfo(here))
    start = (local - dt.timedelta(hours=2)).strftime("%H:%M")
    end = (local + dt.timedelta(hours=2)).strftime("%H:%M")
    customers = [{**p, "timezone": here if i % 2 == 0 else there}
                 for i, p in enumerate(people(6))]
    customers[4]["timezone"] = ""              # no zone: the window's own (UTC)
    customers[5]["timezone"] = "../../etc/passwd"   # hostile: the window's own, said so
    root = house(content_tree, customers,
                 edition_yaml=f"send_window: {{start: \"{start}\", end: \"{end}\"}}\n")
    # a spreadsheet's export: BOM, semicolons, CRLF
    lines = [";".join(customers[0])] + [";".join(str(v) for v in c.values())
                                        for c in customers]
    (root / "data" / "customers.csv").write_bytes(
        b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    mailing = "spring-1"
    with smtp_sink() as (port, sink):
        to = ("--to", f"smtp://127.0.0.1:{port}", "--mailing", mailing)
        first = statuses(send(cli, root, "news-a", "out/1", *to))
        rows = {r["customer_id"]: r for r in read_manifest(root / "out" / "1")}
        assert first == {"c000": "sent", "c001": "excluded", "c002": "sent",
                         "c003": "excluded", "c004": "sent", "c005": "sent"}
        assert rows["c001"]["reason"].startswith("deferred until ")
        assert "+12:00" in rows["c001"]["reason"].split()[2]
        assert rows["c001"]["reason_code"] == "deferred"
        assert sorted(sink.received) == ["c000@example.com", "c002@example.com",
                                         "c004@example.com", "c005@example.com"]
        # a dry run defers nobody: it is not a send
        code, out, err = cli("run", "campaigns/news-a.yaml", "--out", "out/dry", cwd=root)
        assert code == 0, out + err
        assert {r["status"] for r in read_manifest(root / "out" / "dry")} == {"rendered"}

        # later, the window is open for everyone: the same mailing sends the deferred ones
        local = dt.datetime.now(dt.UTC)
        wide = (f"send_window: {{start: \"{(local - dt.timedelta(hours=1)):%H:%M}\", "
                f"end: \"{(local + dt.timedelta(hours=13)):%H:%M}\"}}\n")
        (root / "edition.yaml").write_text(wide, encoding="utf-8")
        later = send(cli, root, "news-a", "out/2", *to)
        assert {r["customer_id"]: r.get("reason_code") for r in later} == {
            "c000": "already_sent", "c001": None, "c002": "already_sent",
            "c003": None, "c004": "already_sent", "c005": "already_sent"}
        assert set(statuses(later).values()) == {"sent"}
        assert dict(sink.received) == {f"c{i:03d}@example.com": 1 for i in range(6)}


def test_cap_travels_with_the_work_to_a_worker_without_the_content_root(
        content_tree: Callable, cli: Callable) -> None:
    """A Dask worker has only the unpacked bundle: no ledgers, no edition.yaml. The
    snapshot the main process read goes with the work, for the mailing the run picks."""
    import pickle

    from edition.audience.customers import read_customers
    from edition.run import context, workers
    from edition.run.options import RunOptions

    root = house(content_tree, people(5), edition_yaml=CAP)
    send(cli, root, "news-a", "out/a")
    options = RunOptions.build(campaign=str(root / "campaigns" / "news-b.yaml"),
                               out=str(root / "out" / "b")).resolved()
    work = pickle.loads(pickle.dumps(workers.Work.of(options, workers.plan_for(options))))
    rows = list(read_customers(context.customers_file(options,
                                                      workers.plan_for(options).campaign),
                               need_email=True))
    try:
        result = workers.process_batch(options.replace(mailing="m1"), rows, work)
    finally:
        workers.close_jobs()
    assert [r.status for r in result.rows] == ["excluded"] * 5
    assert {r.reason.code for r in result.rows if r.reason} == {"frequency_cap"}


def test_one_database_named_two_ways_is_read_once_with_the_spelling_that_logs_in(
        tmp_path: Path) -> None:
    from edition.send.history import HouseCampaign, house_ledgers

    found = house_ledgers(tmp_path, [HouseCampaign("a", "marketing", "postgresql://u@db/x"),
                                     HouseCampaign("b", "marketing", None)],
                          {"EDITION_LEDGER_URL": "postgresql://u:secret@db/x"})
    assert found == ["postgresql://u:secret@db/x"]


def test_what_a_campaign_runs_under_house_then_its_own_block_then_off(
        content_tree: Callable) -> None:
    from cadence_content import campaign

    from edition.content.campaign import load_campaign
    from edition.content.house import load_house
    from edition.run.cadence import settings

    root = house(content_tree, people(1), edition_yaml=(
        "frequency_cap: {max: 3, days: 7}\nsend_window: {start: \"09:00\", end: \"20:00\"}\n"
        "global_holdout: {percent: 5}\n"),
        own=campaign("own", frequency_cap={"max": 1, "days": 2}, send_window=False),
        receipt=campaign("receipt", kind="transactional",
                         send_window={"start": "08:00", "end": "22:00"}))
    home = load_house(root)

    def of(name: str) -> tuple[Any, Any, Any]:
        return settings(load_campaign(root / "campaigns" / f"{name}.yaml"), home)

    cap, window, holdout = of("news-a")
    assert (cap.max, cap.days, window.words(), holdout.percent) == (3, 7, "09:00-20:00", 5)
    cap, window, holdout = of("own")
    assert (cap.max, cap.days, window, holdout.percent) == (1, 2, None, 5)
    assert of("bill") == (None, None, None)           # transactional: none of the house's
    cap, window, holdout = of("receipt")              # ... but its own window holds
    assert (cap, window.words(), holdout) == (None, "08:00-22:00", None)


def test_an_unreadable_ledger_stops_the_capped_run_before_anything_is_sent(
        content_tree: Callable, cli: Callable) -> None:
    root = house(content_tree, people(3), edition_yaml=CAP)
    broken = root / "out" / "old-campaign" / "ledger.sqlite"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"this is not a database" * 100)
    code, out, err = cli("run", "campaigns/news-a.yaml", "--send", "--yes", "--out", "out/a",
                         cwd=root)
    assert code == 1, out + err
    assert "cannot read the send history" in err and str(broken) in err
    assert "Traceback" not in err
    assert not (root / "out" / "a" / "manifest.jsonl").exists()


def test_a_monthly_choice_in_the_preference_center_holds_the_next_campaign(
        content_tree: Callable, cli: Callable, tmp_path: Path) -> None:
    """design.md: `weekly`/`monthly` → `excluded` ("frequency: monthly, last sent D") while
    a marketing message went out within 7/30 days; the choice comes from the store."""
    center = {"preferences": {"url": "https://acme.example/preferences"}}
    root = house(content_tree, people(3), **{"news-b": campaign("news-b", **center)})
    send(cli, root, "news-a", "out/a")                      # everyone got news-a today
    crm = tmp_path / "choices.csv"
    crm.write_text("id,frequency\nc001,monthly\nc002,weekly\n", encoding="utf-8")
    code, out, err = cli("preferences", "import", "news-b", str(crm), cwd=root)
    assert code == 0, out + err
    rows = {r["customer_id"]: r for r in send(cli, root, "news-b", "out/b")}
    today = dt.date.today().isoformat()
    assert rows["c000"]["status"] == "sent"                 # no choice: no hold
    for cid, every in (("c001", "monthly"), ("c002", "weekly")):
        assert rows[cid]["status"] == "excluded", rows[cid]
        assert rows[cid]["reason"].startswith(f"frequency: {every}, last sent {today}"), \
            rows[cid]


def test_an_approved_send_checks_the_cap_as_it_is_when_sent(content_tree: Callable,
                                                           cli: Callable) -> None:
    """Approved on Monday, sent on Tuesday: another campaign reached some of its customers
    in between. `edition send` leaves them out (`excluded`, the cap's reason, at send
    time) and sends everyone else exactly the approved bytes."""
    import hashlib
    import json

    customers = people(6)
    root = house(content_tree, customers, edition_yaml=CAP)
    with smtp_sink() as (port, sink):
        to = ("--to", f"smtp://127.0.0.1:{port}")
        code, out, err = cli("run", "campaigns/news-a.yaml", "--out", "out/a", *to, cwd=root)
        assert code == 0, out + err
        assert {r["status"] for r in read_manifest(root / "out" / "a")} == {"rendered"}
        code, out, err = cli("approve", "out/a", "--by", "Ann", "--yes", cwd=root)
        assert code == 0, out + err

        # news-b goes out to three of them in between
        write_customers_file(root / "data" / "some.csv", customers[:3])
        sent_b = send(cli, root, "news-b", "out/b", *to, "--customers", "data/some.csv")
        assert set(statuses(sent_b).values()) == {"sent"} and len(sink.messages) == 3

        code, out, err = cli("send", "out/a", "--yes", *to, cwd=root)
        assert code == 0, out + err
        sends = list((root / "out" / "a" / "sends").iterdir())
        assert len(sends) == 1
        rows = {r["customer_id"]: r for r in read_manifest(sends[0])}
        for person in customers[:3]:
            row = rows[person["id"]]
            assert row["status"] == "excluded" and row["reason_code"] == "frequency_cap", row
            assert row["reason"].startswith("frequency cap: 1 marketing message(s) in the "
                                            "last 7 days (max 1), last sent ")
            assert row["reason"].endswith("(at send time)")
        assert {rows[p["id"]]["status"] for p in customers[3:]} == {"sent"}
        assert len(sink.messages) == 3 + 3
        got = {rcpts[0]: data for _, rcpts, data in sink.messages[3:]}
        assert sorted(got) == sorted(p["email"] for p in customers[3:])
        # the others got exactly the approved files, and the approval still verifies
        approval = json.loads((root / "out" / "a" / "approval.json").read_text("utf-8"))
        for rel, digest in approval["files"].items():
            data = (root / "out" / "a" / rel).read_bytes()
            assert hashlib.sha256(data).hexdigest() == digest, rel
        for person in customers[3:]:
            eml = (root / "out" / "a" / rows[person["id"]]["files"]["eml"]).read_bytes()
            data = got[person["email"]]
            assert data.replace(b"\r\n", b"\n") == eml.replace(b"\r\n", b"\n")
        assert "excluded" in (sends[0] / "report.md").read_text(encoding="utf-8")


def test_a_run_reads_the_house_and_the_choices_once(content_tree: Callable, cli: Callable,
                                                    monkeypatch: Any) -> None:
    """A sending run asks for its cadence from its preflight's dry pipeline, its sending
    pipeline and run.json's record: edition.yaml and the preference snapshot are read
    once for all of them (the pipeline's snapshot is the cadence's), and the holds are
    those of a run that reads them each time."""
    from edition.audience import preferences as prefs
    from edition.run import cadence as cadence_module
    from edition.run.lifecycle import execute
    from edition.run.options import RunOptions

    center = {"preferences": {"url": "https://acme.example/preferences"}}
    root = house(content_tree, people(4), edition_yaml=CAP,
                 **{"news-b": campaign("news-b", **center)})
    send(cli, root, "news-a", "out/a")                      # c000..c003 got news-a today
    crm = root / "choices.csv"
    crm.write_text("id,frequency\nc001,monthly\n", encoding="utf-8")
    assert cli("preferences", "import", "news-b", str(crm), cwd=root)[0] == 0
    (root / "edition.yaml").write_text("frequency_cap: {max: 5, days: 7}\n",
                                       encoding="utf-8")  # only c001's monthly holds now
    reads = {"house": 0, "snapshot": 0}
    load_house, load = cadence_module.load_house, prefs.PreferenceSnapshot.load.__func__

    def counted_house(*args: Any, **kwargs: Any) -> Any:
        reads["house"] += 1
        return load_house(*args, **kwargs)

    def counted_load(cls: Any, *args: Any, **kwargs: Any) -> Any:
        reads["snapshot"] += 1
        return load(cls, *args, **kwargs)

    monkeypatch.setattr(cadence_module, "load_house", counted_house)
    monkeypatch.setattr(prefs.PreferenceSnapshot, "load", classmethod(counted_load))
    out = root / "out" / "b"
    summary = execute(RunOptions(campaign=str(root / "campaigns" / "news-b.yaml"),
                                 out=str(out), send=True))
    assert summary.exit_code == 0
    assert statuses(read_manifest(out)) == {"c000": "sent", "c001": "excluded",
                                            "c002": "sent", "c003": "sent"}
    assert reads["house"] == 1, reads
    # the dry pipeline of preflight and the sending pipeline each hold one snapshot
    assert reads["snapshot"] <= 2, reads
