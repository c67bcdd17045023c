"""The Prefect flows are wiring around the same engine: same manifest, same bytes.

Runs on Prefect's ephemeral test server (one per session, `prefect_harness`).
"""

from __future__ import annotations

import datetime as dt
import inspect
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from conftest import AS_OF, read_manifest, run_cli

pytestmark = pytest.mark.usefixtures("prefect_harness")

STARTED = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
CAMPAIGN = "weekly-newsletter"


def flow_kwargs(out: Path, **settings: Any) -> dict[str, Any]:
    """send_campaign's run settings, grouped under `advanced` when the flow has that."""
    from flows.campaign import send_campaign

    settings = {"out": str(out), "batch_size": 100, **settings}
    if "advanced" in inspect.signature(send_campaign.fn).parameters:
        from flows.campaign import RunSettings

        return {"advanced": RunSettings(**settings)}
    settings.pop("started", None)
    return settings


def run_flow(root: Path, customers: Path, out: Path, **settings: Any) -> tuple[UUID, dict]:
    from flows.campaign import send_campaign

    state = send_campaign(campaign=str(root / "campaigns" / f"{CAMPAIGN}.yaml"),
                          customers=str(customers), as_of=dt.date.fromisoformat(AS_OF),
                          return_state=True, **flow_kwargs(out, **settings))
    assert state.is_completed(), state
    return state.state_details.flow_run_id, state.result()


def files_of(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.suffix in {".html", ".txt", ".eml"}}


def without_date(eml: bytes) -> bytes:
    return b"\r\n".join(line for line in eml.split(b"\r\n") if not line.startswith(b"Date: "))


@pytest.fixture(scope="module")
def cli_out(sample_root: Path, sample_customers: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flow") / "cli"
    rc, _, stderr = run_cli("run", f"campaigns/{CAMPAIGN}.yaml", "--customers", sample_customers,
                            "--out", out, "--as-of", AS_OF, cwd=sample_root)
    assert rc == 0, stderr
    return out


@pytest.fixture(scope="module")
def thread_run(sample_root: Path, sample_customers: Path,
               tmp_path_factory: pytest.TempPathFactory, prefect_harness) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("flow") / "thread"
    flow_run_id, result = run_flow(sample_root, sample_customers, out, task_runner="thread",
                                   started=STARTED)
    return {"out": out, "flow_run_id": flow_run_id, "result": result}


def test_flow_gives_the_same_manifest_and_files_as_the_cli(thread_run, cli_out: Path) -> None:
    out = thread_run["out"]
    assert thread_run["result"]["customers"] == 300
    assert thread_run["result"]["counts"] == {"rendered": 300}
    assert read_manifest(out) == read_manifest(cli_out)
    ours, theirs = files_of(out), files_of(cli_out)
    assert ours.keys() == theirs.keys() and len(ours) == 900
    for rel, data in ours.items():
        if rel.endswith(".eml"):  # the Date header is the run's clock
            assert without_date(data) == without_date(theirs[rel]), rel
        else:
            assert data == theirs[rel], rel
    for name in ("versions.json",):
        assert (out / name).read_text() == (cli_out / name).read_text()


def test_flow_creates_report_versions_and_output_artifacts(thread_run) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[thread_run["flow_run_id"]])))
    by_key = {a.key: a for a in artifacts if a.key}
    report = by_key[f"report-{CAMPAIGN}"]
    assert report.type == "markdown"
    assert f"# Run report: {CAMPAIGN}" in report.data and "300" in report.data
    versions = by_key[f"versions-{CAMPAIGN}"]
    assert versions.type == "table"
    output = by_key[f"output-{CAMPAIGN}"]
    assert output.type in {"link", "markdown"}  # Prefect stores links as Markdown
    assert Path(thread_run["out"]).name in str(output.data)
    progress = by_key.get(f"progress-{CAMPAIGN}")
    assert progress is not None and float(progress.data) == pytest.approx(100.0)


def test_process_task_runner_gives_identical_bytes(thread_run, sample_root: Path,
                                                   sample_customers: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "process"
    _, result = run_flow(sample_root, sample_customers, out, task_runner="process", workers=2,
                         started=STARTED)
    assert result["counts"] == {"rendered": 300}
    assert read_manifest(out) == read_manifest(thread_run["out"])
    ours, theirs = files_of(out), files_of(thread_run["out"])
    assert ours.keys() == theirs.keys()
    same_clock = "advanced" in inspect.signature(
        __import__("flows.campaign", fromlist=["send_campaign"]).send_campaign.fn).parameters
    for rel, data in ours.items():
        if rel.endswith(".eml") and not same_clock:
            assert without_date(data) == without_date(theirs[rel]), rel
        else:
            assert data == theirs[rel], rel


def test_preview_flow_selects_what_edition_preview_selects(cli_out: Path, sample_root: Path,
                                                           sample_customers: Path) -> None:
    from flows.preview import preview_customer

    row = next(m for m in read_manifest(cli_out) if m["segments"])
    cid = row["customer_id"]
    result = preview_customer(campaign=str(sample_root / "campaigns" / f"{CAMPAIGN}.yaml"),
                              customer_id=cid, customers=str(sample_customers),
                              as_of=dt.date.fromisoformat(AS_OF), format="text")
    assert result["status"] == "rendered"
    assert result["segments"] == row["segments"]
    assert result["version"] == row["version"]
    assert {s["slot"]: [c["id"] for c in s["chosen"]] for s in result["slots"]} == row["modules"]
    rc, stdout, stderr = run_cli("preview", f"campaigns/{CAMPAIGN}.yaml", "--customer", cid,
                                 "--customers", sample_customers, "--as-of", AS_OF,
                                 cwd=sample_root)
    assert rc == 0, stderr
    for slot in result["slots"]:
        for chosen in slot["chosen"]:
            assert f"{chosen['rank']}. {chosen['id']} — " in stdout
            assert f"chosen: {chosen['reason']}" in stdout
        for skipped in slot["skipped"]:
            assert f"- {skipped['id']}: {skipped['reason']}" in stdout
    if "explanation" in result:
        assert stdout.startswith(result["explanation"])


def test_a_run_whose_customers_fail_ends_failed_with_its_report(content_tree,
                                                                tmp_path: Path) -> None:
    """Before, a run in which every customer failed was a Completed flow run."""
    from prefect.client.orchestration import get_client

    from flows.campaign import RunSettings, send_campaign

    page = "<html lang=en><body><p>{{ customer.nickname }}</p></body></html>\n"  # no default
    # half the rows have a nickname: a field that no row has stops the run in preflight
    root = content_tree(
        campaigns={"x.yaml": {"name": "x-fails", "template": "page.html.j2",
                              "slots": {"articles": {"kind": "article", "count": 1}},
                              "formats": ["html"], "customers": "data/c.csv"}},
        templates={"page.html.j2": page}, articles={"a.md": {"title": "A"}},
        customers={"c.csv": [{"id": f"C{i}", "email": f"c{i}@example.com",
                              "nickname": "Nick" if i % 2 else ""} for i in range(4)]})
    state = send_campaign(campaign=str(root / "campaigns" / "x.yaml"), return_state=True,
                          advanced=RunSettings(out=str(tmp_path / "out")))
    assert state.is_failed(), state
    assert "2 customer(s) failed" in (state.message or "")
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    assert any(a.key == "report-x-fails" for a in artifacts)
    assert (tmp_path / "out" / "report.md").is_file()


def test_the_form_has_a_mailing() -> None:
    from prefect.utilities.callables import parameter_schema

    from flows.campaign import send_campaign

    props = parameter_schema(send_campaign).model_dump()["properties"]
    assert "mailing" in props and "new_mailing" in str(props["advanced"]) + str(
        parameter_schema(send_campaign).model_dump().get("definitions", {}))
