"""Issue 20's small gaps: the CRM export carries `subscribed` and `subscribed_at` (the
customer's current state) so that an export goes back in changing nothing, and a
customer row that still says unsubscribed after a resubscribe says why it wins. Real
parts: the CLI in subprocesses, the store on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fixtures_preferences import NAME, dry_run, make_site, run_edition, write_customers

from edition.feedback.preferences import Choices, record
from edition.feedback.resubscribe import resubscribe
from edition.store.consent import ConsentLog
from edition.store.database import Database
from edition.store.suppressions import ALL_MARKETING, SuppressionStore


def _consent_count(location: str) -> int:
    with Database(location) as database:
        log = ConsentLog(database)
        return sum(len(log.of(c)) for c in ("c1", "c2", "c3", "c4", "c5", "c6", "c7"))


def _export(root: Path, store: str) -> str:
    code, out, err = run_edition("preferences", "export", "--campaign", NAME, "--store",
                                 store, cwd=root)
    assert code == 0 and "Traceback" not in err, out + err
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_export_says_subscribed_and_goes_back_in_unchanged(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root = make_site(tmp_path / "site", "https://news.garden.example")
    location = (str(tmp_path / "store.sqlite") if backend == "sqlite"
                else request.getfixturevalue("fresh_postgresql_url"))

    def at(hour: int) -> dt.datetime:
        return dt.datetime(2026, 12, 1, hour, tzinfo=dt.UTC)

    with Database(location) as database:
        store = SuppressionStore(database)
        store.record(NAME, "c1", "", "one-click", at=at(10))                 # out: campaign
        store.record(NAME, "c2", "", "page", scope=ALL_MARKETING, at=at(9))  # out: all
        store.record(NAME, "c3", "", "one-click", scope=ALL_MARKETING, at=at(8))
        store.record(NAME, "c6", "", "one-click", at=at(7))
        for customer, choices in (("c4", Choices(frequency="paused")),       # out: paused
                                  ("c5", Choices(frequency="monthly")),       # in
                                  ("c6", Choices(format="text")),
                                  ("c7", Choices(topics=()))):           # out: no topic
            record(database, campaign=NAME, customer_id=customer, choices=choices,
                   source="web", form="preferences", form_version="v1")
    # c3 comes back from "all marketing" for this campaign, c6 from its own unsubscribe
    crm = tmp_path / "crm.csv"
    crm.write_text("id,subscribed,subscribed_at\nc3,yes,2026-12-01T11:00:00Z\n"
                   "c6,yes,2026-12-01T12:00:00Z\n", encoding="utf-8")
    code, out, err = run_edition("preferences", "import", NAME, crm, "--store", location,
                                 cwd=root)
    assert code == 0, out + err

    first = _export(root, location)
    lines = first.splitlines()
    assert lines[0] == ("campaign,id,topics,frequency,paused_until,format,large_type,locale,"
                        "tracking,day,hour,updated_at,source,subscribed,subscribed_at")
    state = {line.split(",")[1]: line.split(",")[-2:] for line in lines[1:]}
    assert state == {"c1": ["no", "2026-12-01T10:00:00Z"],
                     "c2": ["no", "2026-12-01T09:00:00Z"],
                     "c3": ["yes", "2026-12-01T11:00:00Z"],
                     "c4": ["no", state["c4"][1]],
                     "c5": ["yes", ""],
                     "c6": ["yes", "2026-12-01T12:00:00Z"],
                     "c7": ["no", state["c7"][1]]}, first
    assert state["c4"][1].startswith("20") and state["c7"][1].startswith("20")  # choices' time

    before = _consent_count(location)
    exported = tmp_path / "export.csv"
    exported.write_text(first, encoding="utf-8")
    code, out, err = run_edition("preferences", "import", NAME, exported, "--store",
                                 location, cwd=root)
    assert code == 0 and "0 customer(s) changed, 7 unchanged" in err, out + err
    assert _consent_count(location) == before   # a no-op import records no consent
    assert _export(root, location) == first     # and the export is byte-identical


def test_customer_file_unsubscribed_wins_over_a_resubscribe_and_says_so(
        tmp_path: Path) -> None:
    root = make_site(tmp_path / "site", "https://news.garden.example")
    customers = write_customers(tmp_path / "customers.csv")
    text = customers.read_bytes().decode("utf-8-sig").splitlines()
    rows = [text[0] + ";unsubscribed"] + [
        line + (";2026-11-20" if line.startswith(("c1;", "c2;")) else ";") for line in text[1:]]
    customers.write_text("\r\n".join(rows) + "\r\n", encoding="utf-8")
    store = root / "out" / "suppression.sqlite"
    with SuppressionStore(store) as suppressions:
        suppressions.record(NAME, "c1", "", "one-click",
                            at=dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    # c1 resubscribed on the preference page (its source: web) but the CRM's own
    # column still says unsubscribed: the column wins, and the reason says what to fix
    with Database(str(store)) as database:
        done = resubscribe(database, campaign=NAME, customer_id="c1", source="web",
                           at="2026-12-02T08:00:00Z")
        assert done.change == {"subscribed": [None, NAME]}
    out = dry_run(root, customers, tmp_path / "out")
    assert out["c1"]["status"] == "suppressed"
    assert out["c1"]["reason"] == (
        "suppressed: unsubscribed is 2026-11-20 in the customer file (resubscribed in the "
        "preference center on 2026-12-02: update the CRM)"), out["c1"]
    # c2 never resubscribed: the column's plain reason
    assert out["c2"]["reason"] == "suppressed: unsubscribed is 2026-11-20", out["c2"]
