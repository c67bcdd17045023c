"""`edition serve` without a server: which deployments, prefect.yaml, parameter checks,
and the repair of a run folder whose run died mid-way (flows/serve.py, flows/recovery.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

REPO = Path(__file__).resolve().parents[1]
CONTENT = ("campaigns", "templates", "articles", "offers", "greetings")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    for folder in CONTENT:
        shutil.copytree(REPO / folder, root / folder)
    from edition.audience.sampledata import write_customers

    write_customers(root / "data" / "customers.csv", 120, seed=7)
    return root


def test_prefect_yaml_is_in_step_with_the_campaigns() -> None:
    from flows.serve import prefect_yaml

    assert (REPO / "prefect.yaml").read_text(encoding="utf-8") == prefect_yaml(REPO), (
        "prefect.yaml is stale: python -m flows.serve --prefect-yaml > prefect.yaml")


def test_an_invalid_campaign_is_reported_with_file_and_line_and_skipped(site: Path) -> None:
    from flows.serve import build_deployments

    text = (site / "campaigns" / "invoice.yaml").read_text(encoding="utf-8")
    (site / "campaigns" / "bad.yaml").write_text(
        text.replace("name: invoice", "name: bad") + "slotz: {}\n", encoding="utf-8")
    line = len(text.splitlines()) + 1
    (site / "campaigns" / "twin.yaml").write_text(text, encoding="utf-8")  # name taken
    deployments, served = build_deployments(site)
    assert [d.name for d in deployments] == ["invoice", "vip-offers-es", "weekly-newsletter",
                                             "preview-customer"]
    assert f"campaigns/bad.yaml:{line}: unknown key 'slotz' (did you mean 'slots'?)" in \
        served.problems
    assert any(p.startswith("campaigns/twin.yaml:") and "already used" in p
               for p in served.problems)


def test_each_campaign_is_a_deployment_with_its_schedule_and_one_run_at_a_time(
        site: Path) -> None:
    from flows.serve import build_deployments

    deployments, _ = build_deployments(site)
    by_name = {d.name: d for d in deployments}
    weekly = by_name["weekly-newsletter"]
    assert weekly.parameters == {"campaign": "weekly-newsletter"}  # its name, not a path
    assert weekly.concurrency_limit == 1
    [schedule] = weekly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 8 * * MON",
                                                                    "Europe/London")
    assert by_name["invoice"].schedules == []
    props = weekly._parameter_openapi_schema.properties
    assert props["campaign"]["readOnly"] is True
    assert props["campaign"]["enum"] == ["weekly-newsletter"]
    assert props["campaign"]["default"] == "weekly-newsletter"
    assert props["formats"]["default"] == ["html", "text", "eml"]  # the campaign's own
    assert "Campaign file `campaigns/weekly-newsletter.yaml`" in weekly.description
    preview = by_name["preview-customer"]._parameter_openapi_schema.properties["campaign"]
    assert sorted(preview["enum"]) == ["invoice", "vip-offers-es", "weekly-newsletter"]


def _null_typed(schema: object, where: str = "") -> list[str]:
    """Every place in a JSON schema the form would draw as 'Property is type "None"'."""
    found = []
    if isinstance(schema, dict):
        if schema.get("type") == "null" or schema.get("default", 0) is None:
            found.append(where)
        for key, value in schema.items():
            found += _null_typed(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for number, value in enumerate(schema):
            found += _null_typed(value, f"{where}[{number}]")
    return found


def test_the_form_puts_the_send_switches_first_and_draws_every_field(site: Path) -> None:
    import inspect

    from prefect.utilities.callables import parameter_schema

    from flows.campaign import send_campaign
    from flows.form import DATE_PATTERN
    from flows.preview import preview_customer
    from flows.serve import build_deployments

    deployments, _ = build_deployments(site)
    form = {d.name: d for d in deployments}["weekly-newsletter"]._parameter_openapi_schema
    order = sorted(form.properties, key=lambda name: form.properties[name]["position"])
    assert order[:3] == ["campaign", "dry_run", "confirm_send"]
    # ... while the flow keeps its signature for callers passing arguments by position
    assert list(inspect.signature(send_campaign.fn).parameters)[:3] == [
        "campaign", "customers", "formats"]
    schema = parameter_schema(send_campaign).model_dump()
    props = schema["properties"]
    assert props["dry_run"]["default"] is True and props["confirm_send"]["default"] is False
    assert props["formats"]["items"]["enum"] == ["html", "text", "eml", "pdf"]
    assert props["formats"]["default"] == []
    assert props["as_of"] == {**props["as_of"], "type": "string", "pattern": DATE_PATTERN,
                              "default": ""}
    assert "format" not in props["as_of"]  # "" is not a date: the server would refuse it
    assert props["limit"] == {**props["limit"], "type": "integer", "minimum": 0, "default": 0}
    for name in ("customers", "to", "mailing"):
        assert (props[name]["type"], props[name]["default"]) == ("string", ""), name
    assert _null_typed(schema) == []  # advanced (RunSettings) included
    assert _null_typed(parameter_schema(preview_customer).model_dump()) == []
    # the UI fills the form with the defaults and has the server check them (the
    # Run button stays disabled while it answers with errors)
    from prefect.utilities.schema_tools.validation import preprocess_schema, validate

    for deployment in deployments:
        form = deployment._parameter_openapi_schema.model_dump()
        values = {k: v["default"] for k, v in form["properties"].items() if "default" in v}
        values.setdefault("customer_id", "C000001")  # the preview's one required field
        errors = [f"{list(e.path)}: {e.message}" for e in
                  validate(values, preprocess_schema(form), preprocess=False)]
        assert errors == [], (deployment.name, errors)


def test_the_form_takes_dates_and_times_as_iso_text() -> None:
    import re

    from flows.form import DATE_PATTERN, TIME_PATTERN, RunSettings, run_date

    for text in ("", "2026-11-30"):
        assert re.match(DATE_PATTERN, text), text
    for text in ("", "2026-11-30T08:00:00+00:00", "2026-11-30 08:00", "2026-11-30T08:00Z"):
        assert re.match(TIME_PATTERN, text), text
        assert RunSettings(started=text).started == ("" if not text else RunSettings(
            started=text).started)
    assert not re.match(DATE_PATTERN, "30/11/2026")
    assert str(run_date("2026-11-30")[0]) == "2026-11-30"
    assert str(RunSettings(started="2026-11-30T08:00:00+00:00").started) == \
        "2026-11-30 08:00:00+00:00"


def test_the_campaign_is_found_by_name_or_by_path(site: Path, monkeypatch) -> None:
    from edition.errors import UsageError
    from edition.run.roots import ROOT_ENV
    from flows.form import check_parameters

    file = site / "campaigns" / "weekly-newsletter.yaml"
    monkeypatch.setenv(ROOT_ENV, str(site))
    for ref in ("weekly-newsletter", "campaigns/weekly-newsletter.yaml", str(file)):
        assert check_parameters(ref).campaign == str(file), ref
    renamed = site / "campaigns" / "spring.yaml"  # a name that is not the file's stem
    renamed.write_text(file.read_text().replace("name: weekly-newsletter", "name: spring-ed"))
    assert check_parameters("spring-ed").campaign == str(renamed)
    with pytest.raises(UsageError, match=r"campaign 'nope' not found: no file in .*campaigns"):
        check_parameters("nope")
    monkeypatch.delenv(ROOT_ENV)
    monkeypatch.chdir(site)  # without serve's root, names are looked up from here
    assert check_parameters("weekly-newsletter").campaign == str(file)


def test_empty_values_and_none_both_mean_the_campaigns(site: Path) -> None:
    from edition.errors import UsageError
    from flows.form import RunSettings, check_parameters

    campaign = str(site / "campaigns" / "weekly-newsletter.yaml")
    old = check_parameters(campaign, customers=None, formats=None, as_of=None, limit=None,
                           to=None, mailing=None,
                           advanced=RunSettings(out=None, run_id=None, started=None,
                                                dask_address=None))
    new = check_parameters(campaign, customers="", formats=[], as_of="", limit=0, to="",
                           mailing="", advanced=RunSettings())
    drop = {"run_id", "started"}  # made from the clock
    assert old.model_dump(exclude=drop) == new.model_dump(exclude=drop)
    assert (new.customers, new.formats, new.as_of, new.limit, new.to, new.out) == (
        None, None, None, None, None, None)
    dated = check_parameters(campaign, as_of="2026-11-02", limit=5, formats=["html"])
    assert (str(dated.as_of), dated.limit, dated.formats) == ("2026-11-02", 5, ("html",))
    with pytest.raises(UsageError, match="as_of '2-11-2026' is not a date"):
        check_parameters(campaign, as_of="2-11-2026")


def test_parameters_are_refused_before_any_work(site: Path) -> None:
    from edition.errors import UsageError
    from flows.form import RunSettings, check_parameters

    campaign = str(site / "campaigns" / "weekly-newsletter.yaml")
    with pytest.raises(UsageError, match="campaign file not found"):
        check_parameters(str(site / "campaigns" / "nope.yaml"))
    with pytest.raises(UsageError, match="dry_run off AND confirm_send on"):
        check_parameters(campaign, dry_run=False)
    with pytest.raises(UsageError, match="limit must be 0 or more"):
        check_parameters(campaign, limit=-1)
    with pytest.raises(UsageError, match="customer file not found"):
        check_parameters(campaign, customers="data/nope.csv")
    with pytest.raises(ValidationError, match="batch_size"):
        RunSettings(batch_size=0)
    options = check_parameters(campaign, customers="data/customers.csv", limit=5)
    assert options.customers == str(site / "data" / "customers.csv") and not options.send
    sending = check_parameters(campaign, dry_run=False, confirm_send=True)
    assert sending.send
    assert not (site / "out").exists()  # checking wrote nothing


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("send", [False, True], ids=["dry-run", "sending"])
def test_a_run_folder_killed_mid_batch_is_made_consistent(site: Path, send: bool) -> None:
    from edition.run.folder import read_run_file, write_run_file
    from edition.run.lifecycle import execute
    from edition.run.options import RunOptions
    from edition.run.repair import recover_runs

    out = site / "out" / "weekly-newsletter" / "run-1"
    options = RunOptions(campaign=str(site / "campaigns" / "weekly-newsletter.yaml"),
                         out=str(out), batch_size=40, send=send, to="local").resolved()
    execute(options)
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 120
    # what a kill leaves: 40 rows collected, the next batch's files on disk but not in the
    # manifest, half a line, a temp file, no report, and run.json still saying running
    manifest = "".join(json.dumps(r) + "\n" for r in rows[:40]) + json.dumps(rows[40])[:30]
    (out / "manifest.jsonl").write_text(manifest, encoding="utf-8")
    for name in ("report.md", "versions.json"):
        (out / name).unlink()
    for row in rows[80:]:  # the third batch never rendered
        for rel in row["files"].values():
            (out / rel).unlink()
    (out / "html" / ".C000050.html.123.tmp").write_text("half")
    info = read_run_file(out) or {}
    write_run_file(out, info | {"status": "running", "pid": _dead_pid()})

    [repaired] = recover_runs(out.parent)
    assert repaired.kept == 40 and repaired.torn_line
    fixed = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["customer_id"] for r in fixed] == [r["customer_id"] for r in rows]
    assert fixed[:40] == rows[:40]
    assert {(r["status"], r["reason"], json.dumps(r["files"])) for r in fixed[80:]} == {
        ("failed", "run interrupted", "{}")}
    if send:  # the second batch had been rendered, so maybe delivered: unknown
        assert dict(repaired.added) == {"unknown": 40, "failed": 40}
        assert {(r["status"], r["reason"]) for r in fixed[40:80]} == {
            ("unknown", "run interrupted; delivery outcome not recorded")}
    else:
        assert dict(repaired.added) == {"failed": 80}
        assert {r["status"] for r in fixed[40:80]} == {"failed"}
    named = {rel for r in fixed for rel in r["files"].values()}
    present = {str(p.relative_to(out)) for fmt in ("html", "text", "eml")
               for p in (out / fmt).iterdir()}
    assert present == named  # (local delivery's outbox/ is what was sent: left alone)
    assert "Run interrupted" in (out / "report.md").read_text()
    assert json.loads((out / "versions.json").read_text())["versions"]
    assert read_run_file(out)["status"] == "interrupted"
    assert recover_runs(out.parent) == []  # once is enough


def test_a_live_run_is_left_alone(site: Path) -> None:
    from edition.run.folder import owner, read_run_file, write_run_file
    from edition.run.options import RunOptions
    from edition.run.repair import recover_runs

    out = site / "out" / "weekly-newsletter" / "live"
    out.mkdir(parents=True)
    options = RunOptions(campaign=str(site / "campaigns" / "weekly-newsletter.yaml"),
                         out=str(out)).resolved()
    write_run_file(out, {"status": "running", "options": options.model_dump(mode="json"),
                         **owner()})  # this process
    assert recover_runs(out.parent) == []
    assert read_run_file(out)["status"] == "running"


def test_a_second_serve_for_the_same_folder_is_refused(tmp_path: Path) -> None:
    from edition.run import serve_lock

    first = serve_lock.ServeLock(tmp_path)
    first.acquire(None)
    info = json.loads((tmp_path / serve_lock.SERVE_FILE).read_text())
    assert info["pid"] == os.getpid()
    with pytest.raises(serve_lock.ServeLockError, match="already running"):
        serve_lock.ServeLock(tmp_path).acquire(None)
    first.release()
    assert not (tmp_path / serve_lock.SERVE_FILE).exists()
    again = serve_lock.ServeLock(tmp_path)  # a stopped serve's lock is taken over
    again.acquire(None)
    again.release()


def test_serve_picks_up_runs_every_second_unless_told_otherwise(monkeypatch) -> None:
    from prefect.settings import get_current_settings

    from flows.serve import POLL_SECONDS, _quick_pickup

    monkeypatch.delenv("PREFECT_RUNNER_POLL_FREQUENCY", raising=False)
    with _quick_pickup():
        assert get_current_settings().runner.poll_frequency == POLL_SECONDS == 1
    monkeypatch.setenv("PREFECT_RUNNER_POLL_FREQUENCY", "7")
    with _quick_pickup():  # the user's choice is left alone
        assert get_current_settings().runner.poll_frequency != POLL_SECONDS


def test_the_output_links_show_an_index_with_the_report_first_and_no_locks(
        tmp_path: Path) -> None:
    """The Prefect UI's output link opened a bare directory listing with .edition.lock in
    it: the index lists the report first, and the tool's state is neither listed nor
    served."""
    import httpx

    from web.outputs import start_output_server

    out = tmp_path / "out"
    run = out / "weekly-newsletter" / "20261102-080000-ab12"
    (run / "html").mkdir(parents=True)
    for name, text in {"manifest.jsonl": "{}\n", "versions.json": "{}", "run.json": "{}",
                       "report.md": "# Run report\n", ".edition.lock": "", "zz.txt": "z",
                       "html/C000001.html": "<p>hi</p>", "html/.partial.tmp": "x",
                       "ledger.sqlite": "x"}.items():
        (run / name).write_text(text, encoding="utf-8")
    (out / ".edition-serve.json").write_text('{"pid": 1}', encoding="utf-8")
    (out / "suppression.sqlite").write_text("x", encoding="utf-8")
    server, url = start_output_server(out, 0)
    try:
        page = httpx.get(f"{url}weekly-newsletter/20261102-080000-ab12/", timeout=30)
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        links = re.findall(r'<a href="([^"]+)">', page.text)
        assert links == ["../", "report.md", "manifest.jsonl", "versions.json", "html/",
                         "run.json", "zz.txt"]
        top = httpx.get(url, timeout=30).text
        assert re.findall(r'<a href="([^"]+)">', top) == ["weekly-newsletter/"]
        html_folder = httpx.get(f"{url}weekly-newsletter/20261102-080000-ab12/html/",
                                timeout=30).text
        assert re.findall(r'<a href="([^"]+)">', html_folder) == ["../", "C000001.html"]
        report = httpx.get(f"{url}weekly-newsletter/20261102-080000-ab12/report.md",
                           timeout=30)
        assert report.text == "# Run report\n"
        for hidden in ("weekly-newsletter/20261102-080000-ab12/.edition.lock",
                       "weekly-newsletter/20261102-080000-ab12/%2eedition.lock",
                       "weekly-newsletter/20261102-080000-ab12/ledger.sqlite",
                       ".edition-serve.json", "suppression.sqlite",
                       "weekly-newsletter/20261102-080000-ab12/html/.partial.tmp"):
            assert httpx.get(url + hidden, timeout=30).status_code == 404, hidden
    finally:
        server.shutdown()
        server.server_close()
