"""Suppression: lists, the store, customer columns, marketing vs transactional, reasons."""

from __future__ import annotations

import datetime as dt
import pickle
import sqlite3
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edition.addresses import address_hash
from edition.audience.customers import read_customers
from edition.audience.suppression import Suppression, no_suppression, parse_list, read_list
from edition.content.campaign import Campaign, load_campaign
from edition.errors import ContentError
from edition.store.suppressions import (
    ALL_MARKETING,
    STORE_ENV,
    SuppressionStore,
    database_url,
    store_location,
    store_location_by_name,
)

TEMPLATES = {"t.html.j2": "<p>{{ customer.first_name | default('x') }}</p>"}
NOV_30 = dt.datetime(2026, 11, 30, 9, 15, tzinfo=dt.UTC)


def campaign_yaml(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "weekly", "template": "t.html.j2",
                            "slots": {"a": {"kind": "article"}}}
    return base | extra


@pytest.fixture
def make_campaign(content_tree: Callable[..., Path]) -> Callable[..., Campaign]:
    """A loaded campaign under a fresh content root; `files` adds lists under data/."""
    counter = iter(range(1000))

    def make(files: dict[str, str] | None = None, **extra: Any) -> Campaign:
        root = content_tree(name=f"site{next(counter)}", templates=TEMPLATES,
                            campaigns={"weekly.yaml": campaign_yaml(**extra)},
                            files=files or {})
        return load_campaign(root / "campaigns" / "weekly.yaml")

    return make


def customer(cid: str = "C1", email: str = "ann@example.com", **fields: Any) -> dict[str, Any]:
    return {"id": cid, "email": email, **fields}


# -- lists ---------------------------------------------------------------------------


def test_a_crm_export_with_a_header_row(make_campaign: Callable[..., Campaign]) -> None:
    crm = textwrap.dedent("""\
        Customer ID;E-Mail;Opted out on
        C7;Bob.Stone@Example.ORG;2026-10-01
        ;carla@example.net;2026-10-02
        C9;;2026-10-03
        """)
    campaign = make_campaign(files={"data/optouts.csv": crm},
                             suppression=["data/optouts.csv"])
    s = Suppression.load(campaign, environ={})
    assert s.reason_for(customer("C1", "bob.stone@example.org")) == \
        "suppressed: on data/optouts.csv (line 2)"
    assert s.reason_for(customer("C2", "CARLA@EXAMPLE.NET")) == \
        "suppressed: on data/optouts.csv (line 3)"
    assert s.reason_for(customer("C9", "someone@example.com")) == \
        "suppressed: on data/optouts.csv (line 4)"
    assert s.reason_for(customer("C3", "dan@example.com")) is None
    reason = s.reason_for(customer("C7", "x@example.com"))
    assert reason is not None and reason.code == "suppressed_list"
    assert reason.group == "suppressed: on data/optouts.csv"


def test_plain_text_lists_mix_addresses_and_ids(make_campaign: Callable[..., Campaign]) -> None:
    text = "# exported 2026-11-01\nann@EXAMPLE.com\n\nC000042\n  \"quoted@example.com\"  \n"
    campaign = make_campaign(files={"data/do-not-mail.txt": text},
                             suppression="data/do-not-mail.txt")
    s = Suppression.load(campaign, environ={})
    assert s.reason_for(customer("C1", "Ann@example.com")) == \
        "suppressed: on data/do-not-mail.txt (line 2)"
    assert s.reason_for(customer("C000042", "z@example.com")) == \
        "suppressed: on data/do-not-mail.txt (line 4)"
    assert s.reason_for(customer("C5", "quoted@example.com")) is not None
    # ids are exact: c000042 is another customer
    assert s.reason_for(customer("c000042", "y@example.com")) is None


def test_several_lists_the_first_that_names_a_customer_is_given(
        make_campaign: Callable[..., Campaign], tmp_path: Path) -> None:
    extra = tmp_path / "from-the-flag.csv"
    extra.write_text("email\nzed@example.com\nann@example.com\n", encoding="utf-8")
    campaign = make_campaign(files={"data/a.csv": "id\nC1\n"}, suppression=["data/a.csv"])
    s = Suppression.load(campaign, extra_lists=[extra], environ={})
    assert s.reason_for(customer("C1", "ann@example.com")) == "suppressed: on data/a.csv (line 2)"
    assert s.reason_for(customer("C2", "zed@example.com")) == \
        f"suppressed: on {extra} (line 2)"


def test_list_problems_name_the_file_and_line(make_campaign: Callable[..., Campaign],
                                              tmp_path: Path) -> None:
    with pytest.raises(ContentError, match=r"campaigns/weekly.yaml:\d+: suppression list "
                                           r"'data/missing.csv' not found"):
        make_campaign(suppression=["data/missing.csv"])
    with pytest.raises(ContentError, match="none is named email, id or customer_id") as no_col:
        parse_list("name,phone\nAnn,555\n", "data/crm.csv")
    assert str(no_col.value).startswith("data/crm.csv:1:")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"ann@example.com\nb\xe9a@example.com\n")
    with pytest.raises(ContentError, match="not UTF-8") as bad:
        read_list(latin1, "data/latin1.txt")
    assert bad.value.line == 2
    with pytest.raises(ContentError, match="not found"):
        read_list(tmp_path / "nope.csv")


def test_lists_are_read_once_per_process_while_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "l.txt"
    path.write_text("a@example.com\n", encoding="utf-8")
    first = read_list(path, "l.txt")
    assert read_list(path, "l.txt") is first
    path.write_text("a@example.com\nb@example.com\n", encoding="utf-8")
    assert len(read_list(path, "l.txt")) == 2


def test_a_bom_and_an_empty_list(tmp_path: Path) -> None:
    assert parse_list("\ufeffemail\nA@B.example\n".lstrip("\ufeff"), "x").addresses == {
        "a@b.example": 2}
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfemail\r\nA@B.example\r\n")
    assert dict(read_list(bom).addresses) == {"a@b.example": 2}
    assert len(parse_list("", "empty")) == 0


# -- customer columns ------------------------------------------------------------------


def test_unsubscribed_and_email_status_columns(make_campaign: Callable[..., Campaign]) -> None:
    s = Suppression.load(make_campaign(), environ={})
    assert s.reason_for(customer(unsubscribed="yes")) == "suppressed: unsubscribed is yes"
    assert s.reason_for(customer(unsubscribed=dt.date(2026, 5, 1))) == \
        "suppressed: unsubscribed is 2026-05-01"
    assert s.reason_for(customer(unsubscribed=1)) is not None
    for value in ("no", "false", "0", 0, "", None, "N"):
        assert s.reason_for(customer(unsubscribed=value)) is None, value
    assert s.reason_for(customer(email_status="bounced")) == "suppressed: email_status bounced"
    reason = s.reason_for(customer(email_status="Complained"))
    assert reason == "suppressed: email_status complained"
    assert reason is not None and reason.code == "suppressed_complained"
    assert s.reason_for(customer(email_status="ok")) is None


def test_columns_can_be_renamed_or_turned_off(make_campaign: Callable[..., Campaign]) -> None:
    renamed = Suppression.load(make_campaign(suppression={
        "columns": {"unsubscribed": "opted_out"}}), environ={})
    assert renamed.reason_for(customer(opted_out="true")) == "suppressed: opted_out is true"
    # naming columns means exactly those: email_status is no longer looked at
    assert renamed.reason_for(customer(email_status="bounced", unsubscribed="yes")) is None
    off = Suppression.load(make_campaign(suppression={"columns": {}}), environ={})
    assert off.reason_for(customer(unsubscribed="yes", email_status="bounced")) is None


def test_columns_as_the_customer_file_types_them(make_campaign: Callable[..., Campaign],
                                                 tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("id,email,first_name,unsubscribed,email_status\n"
                    "C1,ann@example.com,Ann,,\n"
                    "C2,bob@example.com,Bob,TRUE,\n"
                    "C3,cy@example.com,Cy,0,\n"
                    "C4,di@example.com,Di,,hard\n"
                    "C5,ed@example.com,Ed,,bounced\n"
                    "C6,fe@example.com,Fe,2026-11-01,\n", encoding="utf-8")
    s = Suppression.load(make_campaign(), environ={})
    reasons = {row.customer_id: s.reason_for(row.fields or {})
               for row in read_customers(path, need_email=True)}
    assert reasons == {"C1": None, "C2": "suppressed: unsubscribed is TRUE", "C3": None,
                       "C4": None, "C5": "suppressed: email_status bounced",
                       "C6": "suppressed: unsubscribed is 2026-11-01"}


# -- the store -----------------------------------------------------------------------


def test_the_store_records_once_and_keeps_the_first_date(tmp_path: Path) -> None:
    with SuppressionStore(tmp_path / "s.sqlite") as store:
        hashed = address_hash("ann@example.com")
        assert store.record("weekly", "C1", hashed, "one-click", at=NOV_30) is True
        assert store.record("weekly", "C1", hashed, "page",
                            at=NOV_30 + dt.timedelta(days=3)) is False
        assert store.record("weekly", "C1", hashed, "page", scope=ALL_MARKETING) is True
        assert store.record("weekly", "C1", hashed, "webhook", kind="bounced") is True
        entries = store.entries()
    assert [(e.kind, e.scope, e.source) for e in entries][:1] == [
        ("unsubscribed", "weekly", "one-click")]
    assert len(entries) == 3 and entries[0].recorded_at == "2026-11-30T09:15:00Z"
    rows = sqlite3.connect(tmp_path / "s.sqlite").execute(
        "select scope, customer_id, kind, campaign from suppressions order by scope").fetchall()
    assert ("weekly", "C1", "unsubscribed", "weekly") in rows
    assert ("*", "C1", "unsubscribed", "weekly") in rows


def test_concurrent_records_of_the_same_unsubscribe(tmp_path: Path) -> None:
    """Mail programs retry: many requests at once still make one row."""
    store = SuppressionStore(tmp_path / "s.sqlite")
    results: list[bool] = []
    lock = threading.Lock()

    def hit() -> None:
        new = store.record("weekly", "C1", "", "one-click")
        with lock:
            results.append(new)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    store.close()
    assert sorted(results) == [False] * 7 + [True]


def test_unsubscribes_from_the_store(make_campaign: Callable[..., Campaign]) -> None:
    campaign = make_campaign()
    with SuppressionStore(store_location(campaign, {})) as store:
        store.record("weekly", "C1", address_hash("ann@example.com"), "page", at=NOV_30)
        store.record("weekly", "C2", address_hash("bob@example.com"), "one-click",
                     scope=ALL_MARKETING, at=NOV_30)
        store.record("other-campaign", "C3", address_hash("cy@example.com"), "page")
        store.record("other-campaign", "C4", address_hash("di@example.com"), "page",
                     kind="complained", at=NOV_30)
    s = Suppression.load(campaign, environ={})
    assert s.reason_for(customer("C1", "ann@example.com")) == \
        "suppressed: unsubscribed via the unsubscribe link on 2026-11-30"
    assert s.reason_for(customer("C2", "bob@example.com")) == (
        "suppressed: unsubscribed from all marketing via one-click unsubscribe in their mail "
        "program on 2026-11-30")
    # unsubscribed from another campaign only: this one may still go
    assert s.reason_for(customer("C3", "cy@example.com")) is None
    # the same address under another id is the same person
    assert s.reason_for(customer("C77", "ANN@example.com")) == (
        "suppressed: unsubscribed via the unsubscribe link on 2026-11-30; same address as "
        "customer C1")
    # complaints apply everywhere
    assert s.reason_for(customer("C4", "di@example.com")) == \
        "suppressed: complained (recorded 2026-11-30)"
    assert s.reason_for(customer("C5", "ed@example.com")) is None
    assert (campaign.root / "out" / "suppression.sqlite").is_file()


def test_a_dry_run_without_a_store_creates_none(make_campaign: Callable[..., Campaign]) -> None:
    campaign = make_campaign()
    s = Suppression.load(campaign, environ={})
    assert s.reason_for(customer()) is None
    assert not (campaign.root / "out").exists()


def test_where_the_store_is(make_campaign: Callable[..., Campaign], tmp_path: Path) -> None:
    default = make_campaign()
    assert store_location(default, {}) == \
        f"sqlite:///{default.root / 'out' / 'suppression.sqlite'}"
    configured = make_campaign(suppression={"store": "state/optouts.sqlite"})
    assert store_location(configured, {}) == \
        f"sqlite:///{configured.root / 'state' / 'optouts.sqlite'}"
    assert store_location(configured, {STORE_ENV: "postgresql://u:pw@db/edition"}) == \
        "postgresql+psycopg://u:pw@db/edition"
    assert database_url("postgres://db/x") == "postgresql+psycopg://db/x"
    # the unsubscribe server finds the same store by the campaign's name
    assert store_location_by_name(configured.root, "weekly", {}) == store_location(
        configured, {})
    assert store_location_by_name(configured.root, "renamed-or-deleted", {}) == \
        f"sqlite:///{configured.root / 'out' / 'suppression.sqlite'}"
    with pytest.raises(ContentError, match="must not hold a password"):
        make_campaign(suppression={"store": "postgresql://edition:hunter2@db/edition"})


def test_the_same_store_on_postgresql(fresh_postgresql_url: str,
                                      make_campaign: Callable[..., Campaign]) -> None:
    """One class for SQLite and PostgreSQL: idempotent records, concurrent ones, reads."""
    url = fresh_postgresql_url
    campaign = make_campaign(suppression={"store": url})
    store = SuppressionStore(store_location(campaign, {}))
    assert store.url.startswith("postgresql+psycopg://")
    hashed = address_hash("ann@example.com")
    assert store.record("weekly", "C1", hashed, "page", at=NOV_30) is True
    assert store.record("weekly", "C1", hashed, "one-click") is False
    results: list[bool] = []

    def hit() -> None:
        results.append(store.record("weekly", "C2", "", "one-click", scope=ALL_MARKETING))

    threads = [threading.Thread(target=hit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == [False] * 5 + [True]
    assert [e.customer_id for e in store.lookup("weekly", "C1")] == ["C1"]
    store.close()
    s = Suppression.load(campaign, environ={})
    assert s.reason_for(customer("C9", "Ann@Example.com")) == (
        "suppressed: unsubscribed via the unsubscribe link on 2026-11-30; same address as "
        "customer C1")
    assert s.reason_for(customer("C2", "bob@example.com")) is not None
    assert s.reason_for(customer("C3", "cy@example.com")) is None


# -- marketing vs transactional ----------------------------------------------------------


def test_transactional_ignores_marketing_unsubscribes_only(
        make_campaign: Callable[..., Campaign]) -> None:
    bill = make_campaign(kind="transactional", files={"data/closed.txt": "C9\n"},
                         suppression=["data/closed.txt"])
    with SuppressionStore(store_location(bill, {})) as store:
        store.record("weekly", "C1", address_hash("ann@example.com"), "page")
        store.record("weekly", "C2", "", "page", scope=ALL_MARKETING)
        store.record("weekly", "C3", "", "bounce-webhook", kind="bounced", at=NOV_30)
    s = Suppression.load(bill, environ={})
    assert s.reason_for(customer("C1", unsubscribed="yes")) is None
    assert s.reason_for(customer("C2", "bob@example.com")) is None
    assert s.reason_for(customer("C3", "cy@example.com")) == \
        "suppressed: bounced (recorded 2026-11-30)"
    assert s.reason_for(customer("C4", email_status="bounced")) == \
        "suppressed: email_status bounced"
    assert s.reason_for(customer("C9", "x@example.com")) == \
        "suppressed: on data/closed.txt (line 1)"
    assert "unsubscribes ignored: transactional" in s.describe()


def test_kind_is_checked(make_campaign: Callable[..., Campaign]) -> None:
    assert make_campaign().kind == "marketing"
    with pytest.raises(ContentError, match="kind 'newsletter' must be marketing"):
        make_campaign(kind="newsletter")


# -- one object per process ---------------------------------------------------------------


def test_suppression_pickles_for_pool_workers(make_campaign: Callable[..., Campaign]) -> None:
    campaign = make_campaign(files={"data/l.txt": "bob@example.com\n"},
                             suppression=["data/l.txt"])
    with SuppressionStore(store_location(campaign, {})) as store:
        store.record("weekly", "C1", "", "page", at=NOV_30)
    s = Suppression.load(campaign, environ={})
    copy = pickle.loads(pickle.dumps(s))
    for row in (customer("C1"), customer("C2", "bob@example.com"), customer("C3")):
        assert copy.reason_for(row) == s.reason_for(row)
    assert no_suppression("weekly").reason_for(customer(unsubscribed="yes")) is None


def test_lookups_stay_fast_with_large_lists(make_campaign: Callable[..., Campaign]) -> None:
    many = "email\n" + "".join(f"user{i}@example.com\n" for i in range(50_000))
    campaign = make_campaign(files={"data/big.csv": many}, suppression=["data/big.csv"])
    s = Suppression.load(campaign, environ={})
    rows = [customer(f"C{i}", f"USER{i * 7}@example.com") for i in range(20_000)]
    import time

    started = time.process_time()
    hits = sum(1 for r in rows if s.reason_for(r) is not None)
    spent = time.process_time() - started
    assert hits == sum(1 for i in range(20_000) if i * 7 < 50_000)
    assert spent < 5.0     # ~5 µs per customer here; generous for a loaded machine


def test_run_options_carry_extra_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--suppression FILE` (wired by the CLI) lands in RunOptions, checked and resolved."""
    from edition.errors import UsageError
    from edition.run.options import RunOptions

    (tmp_path / "extra.txt").write_text("C1\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    options = RunOptions.build(campaign="c.yaml", suppression=["extra.txt"]).resolved()
    assert options.suppression == (str(tmp_path / "extra.txt"),)
    with pytest.raises(UsageError, match=r"suppression list not found: missing\.txt"):
        RunOptions.build(campaign="c.yaml", suppression=["missing.txt"])
