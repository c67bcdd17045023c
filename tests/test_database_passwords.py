"""A customers URL's password never reaches a file, a log or an artifact (issue 17, finding 11).

The customers live in a throwaway PostgreSQL (trust authentication: any password is
accepted, so the URL can carry one the way a team's would). The real CLI runs and sends
over `postgresql://edition:<password>@…?table=customers`, a dry run is approved and sent
with `edition approve` / `edition send`, and the Prefect flow renders, pauses for its
approver and sends; then every file of every run folder, the CLI's output, and the flow
run's artifacts and logs are searched for the password in each of its spellings.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import psycopg
import pytest
from fixtures_sending import AS_OF, CAMPAIGN, copy_site, edition, make_customers, manifest

pytestmark = pytest.mark.timeout(600)

PASSWORD = "Leak/Me?pw-7f3a+Q"  # characters that URLs percent-encode
SPELLINGS = {PASSWORD, quote(PASSWORD, safe=""), quote_plus(PASSWORD), "Leak/Me", "pw-7f3a"}


def load_customers(csv_path: Path, url: str) -> None:
    """The CSV's rows as a table of text columns (the sample campaign's fields)."""
    with csv_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = list(rows[0])
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        conn.execute("CREATE TABLE customers ("
                     + ", ".join(f'"{c}" text' for c in columns) + ")")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO customers VALUES ({', '.join(['%s'] * len(columns))})",
                            [[r[c] or None for c in columns] for r in rows])


@pytest.fixture(scope="module")
def customers_url(postgres_server: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`postgresql://edition:<password>@127.0.0.1:port/db?table=customers`, 12 customers."""
    plain = postgres_server.create_database()
    load_customers(make_customers(12, tmp_path_factory.mktemp("crm") / "customers.csv"),
                   plain)
    host = plain.split("@", 1)[1]
    return f"postgresql://edition:{quote(PASSWORD, safe='')}@{host}?table=customers"


def leaks(text: str) -> list[str]:
    return sorted(s for s in SPELLINGS if s in text)


def assert_no_password(*folders: Path, texts: dict[str, str] | None = None) -> int:
    """No spelling of the password in any file under the folders or in the texts;
    the number of files read (so that an empty folder cannot pass)."""
    seen = 0
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            found = leaks(path.read_bytes().decode("utf-8", "replace"))
            assert not found, f"the password is in {path}: {found}"
            seen += 1
    for name, text in (texts or {}).items():
        assert not leaks(text), f"the password is in {name}"
    return seen


def test_cli_run_send_approve_never_write_the_password(customers_url: str,
                                                        tmp_path: Path) -> None:
    site = copy_site(tmp_path / "site")
    sent, dry = tmp_path / "sent", tmp_path / "dry"

    def run_args(folder: Path) -> list[Any]:
        return ["run", CAMPAIGN, "--customers", customers_url, "--out", folder,
                "--as-of", AS_OF]

    code, out, err = edition(*run_args(sent), "--send", "--yes",
                             "--to", f"local:{tmp_path / 'outbox'}", cwd=site)
    assert code == 0, out + err
    assert {r["status"] for r in manifest(sent)} == {"sent"} and len(manifest(sent)) == 12
    texts = {"run --send stdout": out, "run --send stderr": err}

    code, out, err = edition(*run_args(dry), cwd=site)
    assert code == 0, out + err
    texts |= {"run stdout": out, "run stderr": err}
    code, out, err = edition("approve", dry, "--by", "Ann", "--yes", cwd=site)
    assert code == 0, out + err
    texts |= {"approve stdout": out, "approve stderr": err}
    code, out, err = edition("send", dry, "--yes", "--to", f"local:{tmp_path / 'outbox2'}",
                             cwd=site)
    assert code == 0, out + err
    texts |= {"send stdout": out, "send stderr": err}
    assert list(dry.glob("sends/*/report.md")), "the send wrote no report"

    # the folders still say where the customers came from, without the password
    run_json = (sent / "run.json").read_text(encoding="utf-8")
    assert "postgresql://edition:***@127.0.0.1" in run_json
    [send_report] = dry.glob("sends/*/report.md")
    assert "postgresql://edition:***@127.0.0.1" in send_report.read_text(encoding="utf-8")
    files = assert_no_password(sent, dry, site / "out", tmp_path / "outbox",
                               tmp_path / "outbox2", texts=texts)
    assert files > 40


def answer_when_paused(seen: dict[str, Any]) -> threading.Thread:
    """Approve the first paused flow run through the API (as the form would)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState
    from prefect.client.schemas.filters import FlowRunFilterStateName as Name
    from prefect.flow_runs import resume_flow_run

    def wait() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with get_client(sync_client=True) as client:
                paused = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(name=Name(any_=["Paused"]))))
            if paused:
                seen["id"] = paused[0].id
                resume_flow_run(paused[0].id, run_input={"approve": True, "approver": "Dee",
                                                         "note": "ok"})
                return
            time.sleep(0.2)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def flow_run_texts(flow_run_id: Any) -> Iterator[tuple[str, str]]:
    """(name, text) of every artifact and log line of the flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        logs = client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    for artifact in artifacts:
        yield f"artifact {artifact.key}", f"{artifact.data}\n{artifact.description}"
    for number, log in enumerate(logs):
        yield f"log {number}", log.message


def test_reviewed_flow_send_publishes_no_password(prefect_harness: None, customers_url: str,
                                                  tmp_path: Path) -> None:
    from flows.campaign import RunSettings, send_campaign

    site = copy_site(tmp_path / "site")
    out = tmp_path / "run"
    seen: dict[str, Any] = {}
    thread = answer_when_paused(seen)
    state = send_campaign(campaign=str(site / CAMPAIGN), customers=customers_url,
                          as_of=AS_OF, dry_run=False, confirm_send=True,
                          to=f"local:{tmp_path / 'outbox'}",
                          advanced=RunSettings(out=str(out)), return_state=True)
    thread.join(30)
    assert seen.get("id"), "the run never paused for its approver"
    assert state.is_completed(), state
    assert state.result()["counts"] == {"sent": 12}
    texts = dict(flow_run_texts(seen["id"]))
    assert "artifact send-report-weekly-newsletter" in texts, sorted(texts)
    assert "postgresql://edition:***@127.0.0.1" in texts["artifact send-report-weekly-newsletter"]
    assert assert_no_password(out, tmp_path / "outbox", texts=texts) > 40


def test_run_via_prefect_stores_no_password(customers_url: str, tmp_path: Path) -> None:
    """`edition run --via-prefect`: the flow run's parameters, logs and artifacts are kept
    by Prefect (here its ephemeral server's database under a fresh PREFECT_HOME): none of
    them, and no file of the run folder, holds the password."""
    site = copy_site(tmp_path / "site")
    home, out = tmp_path / "prefect-home", tmp_path / "run"
    code, stdout, stderr = edition(
        "run", CAMPAIGN, "--customers", customers_url, "--out", out, "--as-of", AS_OF,
        "--via-prefect", cwd=site, env={"PREFECT_HOME": str(home)}, timeout=300)
    assert code == 0, stdout + stderr
    assert len(manifest(out)) == 12
    databases = list(home.rglob("*.db"))
    assert databases, f"no Prefect database under {home}"
    with sqlite3.connect(databases[0]) as db:   # the server wrote what it was given
        [parameters] = db.execute("SELECT parameters FROM flow_run").fetchone()
    assert "postgresql://edition:***@127.0.0.1" in parameters
    assert assert_no_password(out, home, texts={"stdout": stdout, "stderr": stderr}) > 40


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://ann:s%2Fcr%3Ft@db.example:5432/crm?table=customers",
     "postgresql://ann:***@db.example:5432/crm?table=customers"),
    ("postgresql://ann:s/cr#t@db.example/crm", "postgresql://ann:***@db.example/crm"),
    ("postgresql://ann:s?cr@t@db.example/crm?table=c", "postgresql://ann:***@db.example/crm?table=c"),
    ("postgres://db.example/crm?user=ann&password=secret&sslmode=require",
     "postgres://db.example/crm?user=ann&password=***&sslmode=require"),
    ("smtp://ann:secret@mail.example:587", "smtp://ann:***@mail.example:587"),
    ("postgresql://ann@db.example/crm?application_name=a@b",
     "postgresql://ann@db.example/crm?application_name=a@b"),
    ("data/customers.csv", "data/customers.csv"),
    ("s3://bucket/runs/r1", "s3://bucket/runs/r1"),
])
def test_masked_hides_the_password_in_any_spelling(url: str, shown: str) -> None:
    from edition.databases import masked, sqlalchemy_url

    assert masked(url) == shown
    assert masked(shown) == shown
    if url.startswith("postgres") and "***" in shown:
        # a masked URL read back (run.json) connects with the environment's password
        assert sqlalchemy_url(shown).password is None


def test_run_json_masks_every_url_it_records(customers_url: str, tmp_path: Path) -> None:
    """The customers URL and a marker URL (the flow records its Prefect API's) go into
    run.json masked; the run still reads its customers with the password it was given."""
    from edition.run.lifecycle import execute
    from edition.run.options import RunOptions

    site = copy_site(tmp_path / "site")
    out = tmp_path / "run"
    summary = execute(RunOptions(campaign=str(site / CAMPAIGN), customers=customers_url,
                                 out=str(out), as_of=AS_OF, formats=("html",)),
                      api_url=f"http://prefect:{quote(PASSWORD, safe='')}@127.0.0.1:4200/api")
    assert summary.counts == {"rendered": 12}
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert run["api_url"] == "http://prefect:***@127.0.0.1:4200/api"
    assert run["options"]["customers"].startswith("postgresql://edition:***@127.0.0.1")
    assert assert_no_password(out) > 12
