"""Coming back after saying no (issue 20): the preference page's "subscribe again", the
CRM's `subscribed` column, the order in time of unsubscribes and resubscribes, and the
CRM's preferred day and hour. Real parts: `edition web` on a loopback port driven with
httpx, the CLI in subprocesses, the store on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest
from fixtures_preferences import (
    CAMPAIGN,
    NAME,
    dry_run,
    free_port,
    make_site,
    run_edition,
    web_server,
    write_customers,
)
from fixtures_sending import cli_env, edition_command

from edition.audience.suppression import Suppression
from edition.feedback.resubscribe import resubscribe
from edition.store.database import Database
from edition.store.suppressions import ALL_MARKETING, SuppressionStore

SECRET_ENV = {"EDITION_UNSUBSCRIBE_SECRET": "a-test-secret-of-at-least-32-bytes-long!"}


def link(out: Path, row: dict, anchor: str) -> str:
    html = (out / row["files"]["html"]).read_text(encoding="utf-8")
    found = re.search(rf'id="{anchor}" href="([^"]+)"', html)
    assert found, html
    return found.group(1).replace("&amp;", "&")


def consent(root: Path, customer: str, *store: str) -> list[dict]:
    code, out, err = run_edition("preferences", "export", "--customer", customer, *store,
                                 cwd=root)
    assert code == 0, out + err
    return json.loads(out)


def test_subscribe_again_on_the_preference_page(tmp_path: Path) -> None:
    port = free_port()
    root = make_site(tmp_path / "site", f"http://127.0.0.1:{port}")
    customers = write_customers(tmp_path / "customers.csv")
    rows = dry_run(root, customers, tmp_path / "first")
    unsub = {c: link(tmp_path / "first", rows[c], "unsub") for c in ("c1", "c2", "c4")}
    prefs = {c: link(tmp_path / "first", rows[c], "prefs") for c in ("c1", "c2", "c4")}
    with web_server(root, port):
        # c1: one-click in the mail program; c4: "all marketing" on the page; c2: pause
        assert httpx.post(unsub["c1"], data={"List-Unsubscribe": "One-Click"},
                          timeout=60).status_code == 200
        assert httpx.post(unsub["c4"], data={"List-Unsubscribe": "One-Click", "scope": "all",
                                             "via": "page"}, timeout=60).status_code == 200
        assert httpx.post(prefs["c2"], data={"frequency": "paused"},
                          timeout=60).status_code == 200
        out = dry_run(root, customers, tmp_path / "out")
        assert [out[c]["status"] for c in ("c1", "c2", "c4")] == ["suppressed"] * 3

        # the page offers "subscribe again", in the customer's language; GET changes nothing
        page = httpx.get(prefs["c1"], timeout=60)
        assert page.status_code == 200 and 'id="resubscribe"' in page.text
        assert "You unsubscribed from these e-mails on" in page.text
        spanish = httpx.get(prefs["c4"], timeout=60).text
        assert "Volver a suscribirme" in spanish and "todos nuestros correos" in spanish
        assert 'id="resubscribe"' in httpx.get(prefs["c2"], timeout=60).text
        assert dry_run(root, customers, tmp_path / "still")["c1"]["status"] == "suppressed"
        # a tampered link, or a resubscribe smuggling other fields: 400, nothing recorded
        tampered = prefs["c1"][:-2] + ("A" if prefs["c1"][-2] != "A" else "B") + \
            prefs["c1"][-1]
        assert httpx.post(tampered, data={"form": "resubscribe"},
                          timeout=60).status_code == 400
        assert httpx.post(prefs["c1"], data={"form": "resubscribe", "scope": "*"},
                          timeout=60).status_code == 400
        assert [r["form"] for r in consent(root, "c1")] == ["unsubscribe"]

        for customer in ("c1", "c2", "c4"):
            done = httpx.post(prefs[customer], data={"form": "resubscribe"}, timeout=60,
                              headers={"user-agent": "pytest-browser"})
            assert done.status_code == 200, done.text
            assert 'id="resubscribed"' in done.text and 'id="resubscribe"' not in done.text
        back = dry_run(root, customers, tmp_path / "back")
        assert [back[c]["status"] for c in ("c1", "c2", "c4")] == ["rendered"] * 3
        assert re.fullmatch(r"subscribed again by the customer on \d{4}-\d\d-\d\d \(preference "
                            r"center\), after unsubscribing on \d{4}-\d\d-\d\d",
                            back["c1"]["resubscribed"]), back["c1"]
        assert "after unsubscribing from all marketing" in back["c4"]["resubscribed"]
        assert "resubscribed" in back["c1"]["choices"]
        report = (tmp_path / "back" / "report.md").read_text(encoding="utf-8")
        assert "resubscribed 2" in report, report
        code, text, err = run_edition("preview", CAMPAIGN, "--customer", "c1", "--customers",
                                      customers, "--as-of", "2026-11-23", cwd=root)
        assert code == 0, text + err
        assert "mailed: subscribed again by the customer on" in text

        # the consent export shows the chain, with form, text version, source, client
        chain = consent(root, "c1")
        assert [(r["form"], r["source"], r["change"]) for r in chain] == [
            ("unsubscribe", "one-click", {"subscribed": [NAME, None]}),
            ("resubscribe", "web", {"subscribed": [None, NAME]})]
        assert re.fullmatch(r"[0-9a-f]{16}", chain[1]["form_version"])
        assert re.fullmatch(r"[0-9a-f]{64}", chain[1]["client_hash"])
        assert chain[0]["time"] <= chain[1]["time"]
        everything = consent(root, "c4")   # unsubscribed on the page: its text's version
        assert (everything[0]["source"], everything[0]["change"]) == (
            "page", {"subscribed": ["*", None]})
        assert re.fullmatch(r"[0-9a-f]{16}", everything[0]["form_version"]), everything
        paused = consent(root, "c2")
        assert paused[-1]["change"] == {"frequency": ["paused", "every"]}
        # c4's "all marketing" stays for every other campaign
        with SuppressionStore(root / "out" / "suppression.sqlite") as store:
            assert any(e.scope == ALL_MARKETING for e in
                       store.snapshot("another-campaign").by_id["c4"])
            assert "c1" not in store.snapshot(NAME).by_id

        # a later unsubscribe wins again
        assert httpx.post(unsub["c1"], data={"List-Unsubscribe": "One-Click"},
                          timeout=60).status_code == 200
        again = dry_run(root, customers, tmp_path / "again")
        assert again["c1"]["status"] == "suppressed", again["c1"]
        assert again["c4"]["status"] == "rendered"
        assert [r["form"] for r in consent(root, "c1")] == [
            "unsubscribe", "resubscribe", "unsubscribe"]
        assert 'id="resubscribe"' in httpx.get(prefs["c1"], timeout=60).text


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_later_of_unsubscribe_and_resubscribe_wins(backend: str, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    location = (str(tmp_path / "store.sqlite") if backend == "sqlite"
                else request.getfixturevalue("fresh_postgresql_url"))

    def at(hour: int) -> dt.datetime:
        return dt.datetime(2026, 12, 1, hour, tzinfo=dt.UTC)

    def reason(store: SuppressionStore, customer: str, campaign: str = NAME) -> str | None:
        found = Suppression(campaign=campaign, store=store.snapshot(campaign)).reason_for(
            {"id": customer, "email": f"{customer}@example.com"})
        return None if found is None else str(found)

    with Database(location) as database:
        store = SuppressionStore(database)
        store.record(NAME, "c1", "", "one-click", at=at(10))
        store.record(NAME, "c2", "", "page", scope=ALL_MARKETING, at=at(10))
        store.record(NAME, "c3", "", "event:hard, 5.1.1|smtp", kind="bounced", at=at(10))
        # a resubscribe dated before the unsubscribe (an old CRM file) lifts nothing
        early = resubscribe(database, campaign=NAME, customer_id="c1", source="crm",
                            at="2026-12-01T09:00:00Z")
        assert early.change == {} and early.later is not None
        assert reason(store, "c1", NAME).startswith("suppressed: unsubscribed")
        for customer in ("c1", "c2", "c3"):
            resubscribe(database, campaign=NAME, customer_id=customer, source="web",
                        at="2026-12-01T11:00:00Z")
        assert reason(store, "c1") is None and reason(store, "c2") is None
        assert reason(store, "c3").startswith("suppressed: bounced")   # never lifted
        assert reason(store, "c2", "other").startswith("suppressed: unsubscribed from all")
        assert Suppression(campaign=NAME, store=store.snapshot(NAME)).resubscribed(
            {"id": "c2"}) == ("subscribed again by the customer on 2026-12-01 (preference "
                              "center), after unsubscribing from all marketing on 2026-12-01")
        # an unsubscribe after it wins again, on this campaign and from all marketing
        assert store.record(NAME, "c1", "", "one-click", at=at(12)) is True
        assert store.record(NAME, "c2", "", "one-click", scope=ALL_MARKETING, at=at(12))
        assert reason(store, "c1") == ("suppressed: unsubscribed via one-click unsubscribe "
                                       "in their mail program on 2026-12-01")
        assert reason(store, "c2").startswith("suppressed: unsubscribed from all marketing")
        # a repeated unsubscribe with no resubscribe in between stays idempotent
        assert store.record(NAME, "c1", "", "one-click", at=at(13)) is False


def test_crm_subscribed_column_and_preferred_day_and_hour(tmp_path: Path) -> None:
    root = make_site(tmp_path / "site", "https://news.garden.example")
    campaign = root / CAMPAIGN
    data = json.loads(campaign.read_text(encoding="utf-8"))
    data["preferences"]["time"] = True
    campaign.write_text(json.dumps(data, indent=1), encoding="utf-8")
    customers = write_customers(tmp_path / "customers.csv")
    store = root / "out" / "suppression.sqlite"
    with SuppressionStore(store) as suppressions:
        for customer in ("c1", "c2", "c4"):
            suppressions.record(NAME, customer, "", "one-click",
                                at=dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC))
    crm = tmp_path / "crm.csv"
    crm.write_bytes("Id;Subscribed;Subscribed_At;Day;Hour\r\n"
                    "c1;yes;;1;9\r\n"                         # back, invoice on the 1st at 9
                    "c2;Yes;2026-11-30;mon;\r\n"              # older than the click: stays out
                    "c4;maybe;;;\r\n"                         # bad value
                    "c1;;;31;\r\n"                            # day out of range
                    "c1;;;;24\r\n"                            # hour out of range
                    "c1;;;monday;\r\n"                        # not a weekday key
                    "c1;yes;2999-01-01;;\r\n"                 # a time in the future
                    "c9;no;;tue;7\r\n".encode("cp1252"))      # an unsubscribe from the CRM
    code, out, err = run_edition("preferences", "import", NAME, crm, cwd=root)
    assert code == 3, out + err
    assert f"{crm}:4: rejected: subscribed must be yes or no, not 'maybe'" in err
    assert f"{crm}:5: rejected: day must be a day of the month from 1 to 28" in err
    assert f"{crm}:6: rejected: hour must be a whole hour from 0 to 23" in err
    assert f"{crm}:7: rejected: day must be" in err
    assert f"{crm}:8: rejected: subscribed_at 2999-01-01 is in the future" in err
    assert re.search(rf"{re.escape(str(crm))}:3: subscribed at 2026-11-30T00:00:00Z but "
                     r"unsubscribed later, on 2026-12-01T10:00:00Z .*stays out", err), err
    assert "Traceback" not in err
    code, text, err = run_edition("preferences", "export", "--campaign", NAME, cwd=root)
    assert code == 0, err
    lines = text.splitlines()
    assert lines[0] == ("campaign,id,topics,frequency,paused_until,format,large_type,locale,"
                        "tracking,day,hour,updated_at,source,subscribed,subscribed_at")
    exported = {line.split(",")[1]: line.split(",")[9:11] for line in lines[1:]}
    # c4 chose nothing but unsubscribed: a row all the same, for its `subscribed`
    assert exported == {"c1": ["1", "9"], "c2": ["mon", ""], "c4": ["", ""],
                        "c9": ["tue", "7"]}
    state = {line.split(",")[1]: line.split(",")[13] for line in lines[1:]}
    assert state == {"c1": "yes", "c2": "no", "c4": "no", "c9": "no"}
    # c1 is back (its record says crm), c2 stays out, c9 is out now
    chain = consent(root, "c1")
    assert chain[-1]["source"] == "crm" and chain[-1]["change"]["subscribed"] == [None, NAME]
    assert [(r["form"], r["change"]) for r in chain] == [   # the choices, then the return
        ("crm-import", {"day": [None, "1"], "hour": [None, 9]}),
        ("crm-import", {"subscribed": [None, NAME]})]
    assert consent(root, "c9")[-1]["change"] == {"subscribed": [NAME, None]}
    rows = dry_run(root, customers, tmp_path / "out")
    assert rows["c1"]["status"] == "rendered"
    assert "(CRM import)" in rows["c1"]["resubscribed"]
    assert rows["c2"]["status"] == "suppressed"
    # the export goes back in unchanged
    again = tmp_path / "again.csv"
    again.write_text(text, encoding="utf-8")
    code, _, err = run_edition("preferences", "import", NAME, again, cwd=root)
    assert code == 0 and "0 customer(s) changed, 4 unchanged" in err, err

    # a campaign without preferences.time: day and hour are refused with the reason
    data["preferences"].pop("time")
    campaign.write_text(json.dumps(data, indent=1), encoding="utf-8")
    code, _, err = run_edition("preferences", "import", NAME, again, cwd=root)
    assert code == 3, err
    assert (f"{again}:2: rejected: day and hour: campaign {NAME} does not offer a preferred "
            "day and hour (preferences.time)") in err


def test_crm_resubscribe_on_postgresql(tmp_path: Path, fresh_postgresql_url: str) -> None:
    root = make_site(tmp_path / "site", "https://news.garden.example")
    customers = write_customers(tmp_path / "customers.csv")
    with SuppressionStore(fresh_postgresql_url) as store:
        store.record(NAME, "c1", "", "one-click", scope=ALL_MARKETING)
    crm = tmp_path / "crm.csv"
    crm.write_text("id,subscribed\nc1,yes\n", encoding="utf-8")
    code, out, err = run_edition("preferences", "import", NAME, crm, "--store",
                                 fresh_postgresql_url, cwd=root)
    assert code == 0, out + err
    chain = consent(root, "c1", "--store", fresh_postgresql_url)
    assert [r["change"] for r in chain] == [{"subscribed": [None, NAME]}]
    env = cli_env() | {"EDITION_STORE": fresh_postgresql_url}   # the run's store
    proc = subprocess.run([*edition_command(), "run", CAMPAIGN, "--customers", str(customers),
                           "--out", str(tmp_path / "out"), "--as-of", "2026-11-23"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {json.loads(line)["customer_id"]: json.loads(line) for line in
            (tmp_path / "out" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()}
    assert rows["c1"]["status"] == "rendered" and "from all marketing" in \
        rows["c1"]["resubscribed"]


def test_preflight_and_the_report_count_what_customers_chose(tmp_path: Path) -> None:
    from edition.feedback.preferences import record
    from edition.store.preferences import Choices

    root = make_site(tmp_path / "site", "https://news.garden.example")
    customers = write_customers(tmp_path / "customers.csv")
    with Database(root / "out" / "suppression.sqlite") as database:
        for customer, choices in (("c1", Choices(format="text", large_type=True)),
                                  ("c2", Choices(frequency="paused")),
                                  ("c4", Choices(topics=()))):
            record(database, campaign=NAME, customer_id=customer, choices=choices,
                   source="crm", form="crm-import")
    code, out, err = run_edition("validate", CAMPAIGN, "--customers", customers, cwd=root)
    assert code == 0, out + err
    said = ("customers' own choices (preference center): 1 get an edition they changed "
            "(format 1, large_type 1), 2 get nothing by their choice (paused or every topic "
            "off)")
    assert said in " ".join(out.split()), out
    dry_run(root, customers, tmp_path / "out")
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert said in report, report
    assert ("1 customer(s) get an edition changed by their own choices in the preference "
            "center: format 1, large_type 1.") in report
    assert ("2 customer(s) get nothing by their own choice (paused, or every topic switched "
            "off)") in report


def test_edition_send_asks_the_preference_center_again(tmp_path: Path) -> None:
    """A customer who paused (or switched every topic off) after the approval is not
    mailed by the approved send: "no" by another door is honoured at send time."""
    from fixtures_delivery import smtp_sink
    from fixtures_sending import (
        copy_site,
        edition,
        make_customers,
        manifest,
        run_args,
        set_delivery,
    )

    from edition.feedback.preferences import record
    from edition.store.preferences import Choices

    site = copy_site(tmp_path / "site")
    path, out = make_customers(8, tmp_path / "customers.csv"), tmp_path / "run"
    with smtp_sink() as (port, sink):
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}"})
        code, stdout, stderr = edition(*run_args(path, out), cwd=site, env=SECRET_ENV)
        assert code == 0, stdout + stderr
        code, stdout, stderr = edition("approve", out, "--by", "Ann Approver", "--yes",
                                       cwd=site, env=SECRET_ENV)
        assert code == 0, stdout + stderr
        rows = [r for r in manifest(out) if r["status"] == "rendered"]
        paused, quiet = rows[1]["customer_id"], rows[2]["customer_id"]
        with Database(site / "out" / "suppression.sqlite") as database:
            record(database, campaign="weekly-newsletter", customer_id=paused,
                   choices=Choices(frequency="paused"), source="web", form="preferences")
            record(database, campaign="weekly-newsletter", customer_id=quiet,
                   choices=Choices(topics=()), source="web", form="preferences")
        code, stdout, stderr = edition("send", out, "--yes", cwd=site, env=SECRET_ENV)
        assert code == 0, stdout + stderr
        assert len(sink.messages) == len(rows) - 2
    sends = sorted((out / "sends").iterdir())
    sent = {r["customer_id"]: r for r in manifest(sends[-1])}
    assert sent[paused]["status"] == "suppressed"
    assert "paused by the customer on" in sent[paused]["reason"], sent[paused]
    assert "every topic switched off" in sent[quiet]["reason"], sent[quiet]
