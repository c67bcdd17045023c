"""The preference center end to end (issue 20, part 1): `edition web` serving the page
behind the signed `customer.preferences_url` a run wrote, the choices changing the next
dry run, the consent records, the CRM import/export, and the store on SQLite and
PostgreSQL. Real parts: the CLI in subprocesses, `edition web` on a loopback port,
httpx as the browser (tests/test_preferences_browser.py drives Chromium)."""

from __future__ import annotations

import datetime as dt
import email
import json
import re
from email import policy
from pathlib import Path

import httpx
import pytest
from fixtures_preferences import (
    AS_OF,
    CAMPAIGN,
    LONG_ID,
    NAME,
    dry_run,
    free_port,
    make_site,
    run_edition,
    web_server,
    write_customers,
)

from edition.feedback.preferences import (
    BadChoice,
    Offer,
    choices_from_form,
    export,
    record,
)
from edition.store.database import Database
from edition.store.preferences import Choices, PreferenceStore


def link(out: Path, row: dict, anchor: str) -> str:
    html = (out / row["files"]["html"]).read_text(encoding="utf-8")
    found = re.search(rf'id="{anchor}" href="([^"]+)"', html)
    assert found, html
    return found.group(1).replace("&amp;", "&")


def store_rows(root: Path) -> list:
    with Database(root / "out" / "suppression.sqlite") as database:
        return PreferenceStore(database).all()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    port = free_port()
    root = make_site(tmp_path_factory.mktemp("prefs") / "site", f"http://127.0.0.1:{port}")
    with web_server(root, port) as url:
        yield root, url


def test_preferences_url_page_and_next_run(served, tmp_path: Path) -> None:
    root, url = served
    customers = write_customers(tmp_path / "customers.csv")
    rows = dry_run(root, customers, tmp_path / "before")
    assert rows["c1"]["modules"] == {"articles": ["travel-a", "cooking-a"]}  # file's interest
    assert rows["c4"]["modules"] == {"articles": ["travel-es", "garden-es"]}
    ann = link(tmp_path / "before", rows["c1"], "prefs")
    bo = link(tmp_path / "before", rows["c2"], "prefs")
    cy = link(tmp_path / "before", rows[LONG_ID], "prefs")
    # signed like the unsubscribe link, never the bare id
    assert ann.startswith(f"{url}/preferences?token=") and "c1" not in ann.split("?")[1]
    assert LONG_ID not in cy

    # GET shows the page, in the customer's language, and changes nothing
    page = httpx.get(ann, timeout=60)
    assert page.status_code == 200
    assert 'name="topics" value="garden"' in page.text and "Gardening" in page.text
    assert '<label for="topic-garden">' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert store_rows(root) == []
    es = httpx.get(link(tmp_path / "before", rows["c4"], "prefs"), timeout=60)
    assert "Sus preferencias de correo" in es.text and "Jardinería" in es.text

    # a tampered token: 400 on GET and POST, nothing recorded
    tampered = ann[:-2] + ("A" if ann[-2] != "A" else "B") + ann[-1]
    assert httpx.get(tampered, timeout=60).status_code == 400
    assert httpx.post(tampered, data={"frequency": "paused"}, timeout=60).status_code == 400
    # a value the page does not offer, a huge body: refused, nothing recorded
    assert httpx.post(bo, data={"topics": "politics"}, timeout=60).status_code == 400
    assert httpx.post(bo, data={"frequency": "hourly"}, timeout=60).status_code == 400
    assert httpx.post(bo, content=b"frequency=" + b"a" * 100_000, timeout=60,
                      headers={"content-type": "application/x-www-form-urlencoded"}
                      ).status_code == 413
    assert store_rows(root) == []

    # the page's form: garden only, monthly, text, large type, Spanish
    saved = httpx.post(ann, data={"form": "preferences", "topics": ["garden"],
                                  "frequency": "monthly", "format": "text",
                                  "large_type": "on", "locale": "es"}, timeout=60)
    assert saved.status_code == 200, saved.text
    assert 'id="saved"' in saved.text and "Guardado" in saved.text   # now in Spanish
    # an API-style POST that only pauses; and one that switches every topic off
    assert httpx.post(bo, data={"frequency": "paused", "paused_until": "2026-12-01"},
                      timeout=60).status_code == 200
    assert httpx.post(cy, data={"form": "preferences", "frequency": "every"},
                      timeout=60).status_code == 200
    di = link(tmp_path / "before", rows["c4"], "prefs")
    assert httpx.post(di, data={"format": "pdf"}, timeout=60).status_code == 200
    # the page offers the tracking choice and shows the one recorded
    assert 'id="tracking-on" checked' in httpx.get(di, timeout=60).text
    assert httpx.post(di, data={"tracking": "off"}, timeout=60).status_code == 200
    assert 'id="tracking-off" checked' in httpx.get(di, timeout=60).text

    after = dry_run(root, customers, tmp_path / "after")
    assert after["c1"]["status"] == "rendered"
    # the topic kept, in the chosen language; travel-es is switched off (per-topic no)
    assert after["c1"]["modules"] == {"articles": ["garden-es"]}
    html = (tmp_path / "after" / after["c1"]["files"]["html"]).read_text(encoding="utf-8")
    assert 'class="large"' in html and "format: text" in html and 'lang="es"' in html
    # text only: the .eml is one text/plain part, no HTML alternative
    message = email.message_from_bytes(
        (tmp_path / "after" / after["c1"]["files"]["eml"]).read_bytes(), policy=policy.default)
    assert message.get_content_type() == "text/plain", message.get_content_type()
    assert "Rosas en invierno" in message.get_content()
    # a PDF attached for the customer who asked (the run itself makes no pdf); the
    # headers are what they were
    paper = email.message_from_bytes(
        (tmp_path / "after" / after["c4"]["files"]["eml"]).read_bytes(), policy=policy.default)
    before = email.message_from_bytes(
        (tmp_path / "before" / rows["c4"]["files"]["eml"]).read_bytes(), policy=policy.default)
    assert paper.get_content_type() == "multipart/mixed"
    (attached,) = list(paper.iter_attachments())
    assert attached.get_content_type() == "application/pdf"
    assert attached.get_content().startswith(b"%PDF-")
    assert paper.get_body(("html",)) is not None and paper.get_body(("plain",)) is not None
    for header in ("Subject", "To", "From", "List-Unsubscribe", "List-Id"):
        assert paper[header] == before[header], header
    assert after["c2"]["status"] == "suppressed"
    assert after["c2"]["reason"].startswith(
        "suppressed: paused until 2026-12-01 by the customer on "), after["c2"]["reason"]
    assert after[LONG_ID]["status"] == "suppressed"
    assert "every topic switched off" in after[LONG_ID]["reason"]
    assert after["c4"]["status"] == "rendered"
    assert after["c1"]["choices"] == ["topics", "locale", "large_type", "format"]
    assert after["c4"]["choices"] == ["format", "tracking"] and "choices" not in rows["c4"]
    report = (tmp_path / "after" / "report.md").read_text(encoding="utf-8")
    assert "## Customers' choices" in report
    assert ("2 customer(s) get an edition changed by their own choices in the preference "
            "center: format 2, large_type 1, locale 1, topics 1, tracking 1.") in report
    assert "suppressed: paused by the customer" in report
    assert after["c4"]["modules"] == {"articles": ["travel-es", "garden-es"]}   # unchanged
    code, out, err = run_edition("preview", "campaigns/garden-news.yaml", "--customer", "c1",
                                 "--customers", customers, "--as-of", "2026-11-23", cwd=root)
    assert code == 0, out + err
    assert re.search(r"interests shared: garden \(chosen by the customer on \d{4}-\d\d-\d\d\)",
                     out), out
    assert "travel-es: topic switched off by the customer: travel" in out

    # the consent records, for an access request
    code, out, err = run_edition("preferences", "export", "--customer", "c1", cwd=root)
    assert code == 0, out + err
    records = json.loads(out)
    assert len(records) == 1
    change = records[0]["change"]
    assert change["frequency"] == [None, "monthly"] and change["topics"] == [None, ["garden"]]
    assert records[0]["source"] == "web" and records[0]["form"] == "preferences"
    assert re.fullmatch(r"[0-9a-f]{16}", records[0]["form_version"])
    assert re.fullmatch(r"[0-9a-f]{64}", records[0]["client_hash"])
    # the same POST again changes nothing and records nothing
    httpx.post(ann, data={"form": "preferences", "topics": ["garden"],
                          "frequency": "monthly", "format": "text", "large_type": "on",
                          "locale": "es"}, timeout=60)
    assert len(json.loads(run_edition("preferences", "export", "--customer", "c1",
                                      cwd=root)[1])) == 1


def test_existing_unsubscribe_links_work_on_edition_web_and_are_logged(
        served, tmp_path: Path) -> None:
    root, url = served
    customers = write_customers(tmp_path / "customers.csv")
    rows = dry_run(root, customers, tmp_path / "run")
    unsubscribe = link(tmp_path / "run", rows["c4"], "unsub")
    assert unsubscribe.startswith(f"{url}/unsubscribe?token=")
    page = httpx.get(unsubscribe, timeout=60)                           # the page only
    assert page.status_code == 200
    # "fewer, not none": the page offers the customer's own preference center first
    offered = re.search(r'id="preferences"', page.text) and re.search(
        r'href="([^"]+)" id="preferences"', page.text).group(1).replace("&amp;", "&")
    assert offered == link(tmp_path / "run", rows["c4"], "prefs")
    response = httpx.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}, timeout=60)
    assert response.status_code == 200
    again = dry_run(root, customers, tmp_path / "again")
    assert again["c4"]["status"] == "suppressed"
    code, out, err = run_edition("preferences", "export", "--customer", "c4", cwd=root)
    assert code == 0, err
    last = json.loads(out)[-1]   # (the first test may have recorded a choice before)
    assert (last["form"], last["source"], last["change"]) == (
        "unsubscribe", "one-click", {"subscribed": [NAME, None]})


def test_unsubscribe_server_is_an_alias_of_edition_web(tmp_path: Path) -> None:
    port = free_port()
    root = make_site(tmp_path / "site", f"http://127.0.0.1:{port}")
    rows = dry_run(root, write_customers(tmp_path / "c.csv"), tmp_path / "run")
    with web_server(root, port, verb="unsubscribe-server"):
        page = httpx.get(link(tmp_path / "run", rows["c1"], "prefs"), timeout=60)
        assert page.status_code == 200 and 'name="frequency"' in page.text


def test_crm_import_and_export(tmp_path: Path) -> None:
    root = make_site(tmp_path / "site", "https://news.garden.example")
    crm = tmp_path / "crm.csv"
    # Windows-1252, semicolons, an empty cell, a bad topic, a row without an id
    crm.write_bytes("Id;Topics;Frequency;Locale;Large_Type\r\n"
                    "c1;garden;weekly;es;on\r\n"
                    "c2;;paused;;\r\n"
                    "c3;politics;weekly;;\r\n"
                    ";garden;;;\r\n"
                    "Zoë;travel;;;\r\n".encode("cp1252"))
    code, out, err = run_edition("preferences", "import", NAME, crm, cwd=root)
    assert code == 3, out + err
    assert f"{crm}:4: rejected: topic 'politics' is not offered" in err
    assert f"{crm}:5: rejected: no id" in err
    assert "3 customer(s) changed" in err
    code, out, err = run_edition("preferences", "export", "--campaign", NAME, cwd=root)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("campaign,id,topics,frequency")
    assert [line.split(",")[1:4] for line in lines[1:]] == [
        ["Zoë", "travel", ""], ["c1", "garden", "weekly"], ["c2", "", "paused"]]
    records = json.loads(run_edition("preferences", "export", "--customer", "c1",
                                     cwd=root)[1])
    assert records[0]["source"] == "crm" and records[0]["form"] == "crm-import"
    assert records[0]["form_version"].startswith("sha256:")
    # the CRM's own export goes back in unchanged: nothing new is recorded
    again = tmp_path / "again.csv"
    again.write_text(out, encoding="utf-8")
    code, _, err = run_edition("preferences", "import", NAME, again, cwd=root)
    assert code == 0, err
    assert "0 customer(s) changed, 3 unchanged" in err
    # the campaign's file names it too, as for the other verbs
    code, _, err = run_edition("preferences", "import", f"campaigns/{NAME}.yaml", again,
                               cwd=root)
    assert code == 0 and "0 customer(s) changed, 3 unchanged" in err, err
    code, by_file, err = run_edition("preferences", "export", "--campaign",
                                     f"campaigns/{NAME}.yaml", cwd=root)
    assert code == 0 and by_file == out, err
    # an unknown campaign is a usage error, not a traceback
    code, _, err = run_edition("preferences", "import", "nope", crm, cwd=root)
    assert code == 2 and "no campaign called 'nope'" in err and "Traceback" not in err


def test_choices_from_form_refuses_what_the_page_does_not_offer() -> None:
    offer = Offer(("garden", "travel"), ("en", "es"))
    whole = choices_from_form([("form", "preferences"), ("topics", "travel")], offer)
    assert whole.topics == ("travel",) and whole.large_type is False
    assert whole.paused_until == ""     # the page's empty date: no end
    partial = choices_from_form([("frequency", "weekly")], offer)
    assert partial == Choices(frequency="weekly")
    for bad in ([("topics", "x")], [("format", "docx")], [("locale", "fr")],
                [("large_type", "maybe")], [("admin", "1")], [("locale", "<script>")],
                [("paused_until", "tomorrow")]):
        with pytest.raises(BadChoice):
            choices_from_form(bad, offer)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_store_and_consent_on_sqlite_and_postgresql(backend: str, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    location = (str(tmp_path / "store.sqlite") if backend == "sqlite"
                else request.getfixturevalue("fresh_postgresql_url"))
    with Database(location) as database:
        first = record(database, campaign=NAME, customer_id="c1",
                       choices=Choices(topics=("garden",), frequency="paused"),
                       source="web", form="preferences", form_version="v1")
        assert first == {"frequency": [None, "paused"], "topics": [None, ["garden"]]}
        assert record(database, campaign=NAME, customer_id="c1",
                      choices=Choices(frequency="paused"), source="web",
                      form="preferences") == {}
        second = record(database, campaign=NAME, customer_id="c1",
                        choices=Choices(frequency="every", topics=()), source="crm",
                        form="crm-import")
        assert second == {"frequency": ["paused", "every"], "topics": [["garden"], []]}
        snapshot = PreferenceStore(database).snapshot(NAME)
        assert snapshot["c1"].choices == Choices(topics=(), frequency="every")
        assert [r["source"] for r in export(database, "c1")] == ["web", "crm"]
        assert export(database, "nobody") == []


def test_a_bad_preferences_block_names_file_and_line(tmp_path: Path) -> None:
    root = make_site(tmp_path / "site", "https://news.garden.example")
    path = root / "campaigns" / f"{NAME}.yaml"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["preferences"] = {"url": "javascript:alert(1)", "topics": {"Not A Key!": "x"},
                           "colour": "red"}
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1)
                if '"url": "javascript' in text)
    code, out, err = run_edition("validate", f"campaigns/{NAME}.yaml", cwd=root)
    assert code == 2, out + err
    assert "Traceback" not in err
    assert f"{NAME}.yaml:{line}" in err and "preferences.url must be an http(s) URL" in err
    assert "'Not A Key!' must be a lowercase key" in err
    assert "colour" in err


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_answers_at_once_log_a_consistent_chain(backend: str, tmp_path: Path,
                                               request: pytest.FixtureRequest) -> None:
    """Eight answers of one customer at the same time (a double submit, two tabs): every
    one is recorded or refused whole, and each record's "from" is the previous "to"."""
    from concurrent.futures import ThreadPoolExecutor

    location = (str(tmp_path / "store.sqlite") if backend == "sqlite"
                else request.getfixturevalue("fresh_postgresql_url"))
    frequencies = ["weekly", "monthly", "paused", "every"] * 2
    with Database(location) as database:
        def answer(frequency: str) -> dict:
            return record(database, campaign=NAME, customer_id="c1",
                          choices=Choices(frequency=frequency), source="web",
                          form="preferences")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(answer, frequencies))
        log = export(database, "c1")
        assert log, "nothing recorded"
        state = None
        for entry in log:
            before, after = entry["change"]["frequency"]
            assert before == state, log
            state = after
        assert PreferenceStore(database).snapshot(NAME)["c1"].choices.frequency == state


def test_a_bundled_worker_honours_the_choices_read_by_the_main_process(tmp_path: Path) -> None:
    """A Dask worker gets the content as a bundle, with no store under its unpacked root:
    the choices are read once by the main process and travel in the run's Work, as the
    suppression does (before, the worker read an empty store: a paused customer was
    rendered, and with --send mailed)."""
    from concurrent.futures import Future

    from edition.run.lifecycle import execute
    from edition.run.options import RunOptions
    from edition.run.workers import Work, close_jobs, plan_for, process_batch

    root = make_site(tmp_path / "site", "https://news.garden.example")
    with Database(root / "out" / "suppression.sqlite") as database:
        record(database, campaign=NAME, customer_id="c2", choices=Choices(frequency="paused"),
               source="crm", form="crm-import")
    customers = write_customers(tmp_path / "customers.csv")
    options = RunOptions.build(campaign=str(root / "campaigns" / f"{NAME}.yaml"),
                               customers=str(customers), out=str(tmp_path / "out"),
                               batch_size=2).resolved()
    work = Work.of(options, plan_for(options))

    class Bundled:
        workers = 1

        def submit(self, options: RunOptions, batch: list, number: int) -> Future:
            future: Future = Future()
            future.set_result(process_batch(options, batch, work))
            return future

    try:
        summary = execute(options, executor=Bundled())
    finally:
        close_jobs()
    rows = {json.loads(line)["customer_id"]: json.loads(line) for line in
            (tmp_path / "out" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()}
    assert rows["c2"]["status"] == "suppressed", summary.report
    assert rows["c2"]["reason"].startswith("suppressed: paused by the customer")
    assert rows["c1"]["status"] == "rendered"


def test_a_pause_ends_on_its_date() -> None:
    from edition.audience.preferences import PreferenceSnapshot
    from edition.store.preferences import Stored

    def snapshot(until: str | None) -> PreferenceSnapshot:
        stored = Stored(NAME, "c1", Choices(frequency="paused", paused_until=until),
                        "2026-11-01T10:00:00Z", "web")
        return PreferenceSnapshot(NAME, ("garden",), dt.date(2026, 11, 23), {"c1": stored})

    assert snapshot("2026-11-23").apply({"id": "c1"}) is None          # ended today
    assert snapshot("2026-11-24").apply({"id": "c1"}).code == "suppressed_paused"
    reason = snapshot(None).apply({"id": "c1"})
    assert reason == ("suppressed: paused by the customer on 2026-11-01 (preference "
                      "center, web)")
    assert snapshot(None).apply({"id": "someone else"}) is None


def test_a_customer_who_said_no_to_tracking_gets_plain_links() -> None:
    """The preference center's tracking choice reaches render/tracking.py (design.md:
    "A customer who opted out of tracking in the preference center gets plain links")."""
    from edition.audience.preferences import PreferenceSnapshot
    from edition.render.tracking import customer_opted_out
    from edition.store.preferences import Stored

    stored = Stored(NAME, "c1", Choices(tracking=False), "2026-11-01T10:00:00Z", "web")
    snapshot = PreferenceSnapshot(NAME, ("garden",), dt.date(2026, 11, 23), {"c1": stored})
    fields: dict = {"id": "c1"}
    assert snapshot.apply(fields) is None
    assert customer_opted_out(fields) and "tracking" in fields["customer_choices"]
    other: dict = {"id": "c2"}
    snapshot.apply(other)
    assert not customer_opted_out(other)


def test_preferred_day_and_hour_in_pure_logic() -> None:
    from edition.audience.preferred_time import preferred_time_deferral

    monday_8 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)   # a Monday
    assert preferred_time_deferral({}, monday_8) is None
    assert preferred_time_deferral({"preferred_day": "mon"}, monday_8) is None
    late = preferred_time_deferral({"preferred_day": "mon", "preferred_hour": 9}, monday_8)
    assert late is not None and late.detail.startswith("deferred until 2026-12-07T09:00:00+00:00")
    # later on the day than the hour: at once (late beats never)
    assert preferred_time_deferral({"preferred_day": "7", "preferred_hour": 6}, monday_8) is None
    first = preferred_time_deferral({"preferred_day": "1"}, monday_8)
    assert first is not None and first.detail.startswith("deferred until 2027-01-01T00:00:00")
    friday = preferred_time_deferral({"preferred_day": "fri", "preferred_hour": 18,
                                      "timezone": "Europe/Madrid"}, monday_8)
    assert friday is not None
    assert friday.detail.startswith("deferred until 2026-12-11T18:00:00+01:00"), friday.detail
    assert "Europe/Madrid" in friday.detail and friday.code == "deferred"
    odd = preferred_time_deferral({"preferred_day": "tue", "timezone": "Mars/Base"}, monday_8)
    assert odd is not None and "timezone 'Mars/Base' unknown, UTC used" in odd.detail


def test_a_preferred_day_holds_the_send_and_not_the_dry_run(tmp_path: Path) -> None:
    """preferences.time: the page offers a day and an hour; a send on another day waits
    for it (`excluded`, "deferred until …"), a dry run shows the edition as usual."""
    port = free_port()
    root = make_site(tmp_path / "site", f"http://127.0.0.1:{port}")
    data = json.loads((root / CAMPAIGN).read_text(encoding="utf-8"))
    data["preferences"]["time"] = True
    (root / CAMPAIGN).write_text(json.dumps(data), encoding="utf-8")
    customers = write_customers(tmp_path / "customers.csv")
    rows = dry_run(root, customers, tmp_path / "before")
    tomorrow = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[
        (dt.datetime.now(dt.UTC).weekday() + 1) % 7]
    with web_server(root, port) as url:
        ann = link(tmp_path / "before", rows["c1"], "prefs")
        assert url in ann
        page = httpx.get(ann, timeout=60).text
        assert '<label for="day">' in page and '<option value="fri">Friday</option>' in page
        es = httpx.get(link(tmp_path / "before", rows["c4"], "prefs"), timeout=60).text
        assert "Día preferido" in es and "viernes" in es
        saved = httpx.post(ann, data={"day": tomorrow, "hour": "9"}, timeout=60)
        assert saved.status_code == 200, saved.text
        assert f'<option value="{tomorrow}" selected>' in httpx.get(ann, timeout=60).text
        for bad in ({"day": "31"}, {"hour": "24"}, {"day": "someday"}):
            assert httpx.post(ann, data=bad, timeout=60).status_code == 400
    again = dry_run(root, customers, tmp_path / "dry")
    assert again["c1"]["status"] == "rendered"          # a dry run shows it
    code, out, err = run_edition("run", CAMPAIGN, "--customers", customers, "--out",
                                 tmp_path / "sent", "--as-of", AS_OF, "--send", "--yes",
                                 cwd=root)
    assert code == 0, out + err
    sent = {json.loads(line)["customer_id"]: json.loads(line) for line in
            (tmp_path / "sent" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()}
    assert sent["c1"]["status"] == "excluded", sent["c1"]
    assert sent["c1"]["reason"].startswith("deferred until ")
    assert f"the customer's preferred day {tomorrow}, 09:00 UTC" in sent["c1"]["reason"]
    assert sent["c2"]["status"] == "sent"
