"""The send-campaign form as a UI user meets it: help texts the UI can show, the run name
they type, and a refusal that says what to do, through the run's own process.

A deployment's runs are executed by `python -m prefect.engine` (what `edition serve`'s
runner starts for each run), here against the session's Prefect test server, with the
confinement `edition serve` sets (EDITION_CONTENT_ROOT, EDITION_SERVE_ALLOW).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(600)


def descriptions(schema: Any) -> list[str]:
    """Every description in a parameter schema (nested models included)."""
    found = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "description" and isinstance(value, str):
                found.append(value)
            else:
                found += descriptions(value)
    elif isinstance(schema, list):
        for value in schema:
            found += descriptions(value)
    return found


def test_help_texts_survive_the_uis_markdown(sample_root: Path) -> None:
    """The UI renders help texts as Markdown: `out/<campaign>/<run id>` showed as `out//`.
    No raw angle brackets outside code spans; the customers help lists every source."""
    from flows.serve import build_deployments

    deployments, _ = build_deployments(sample_root)
    for deployment in deployments:
        schema = deployment._parameter_openapi_schema.model_dump()
        texts = descriptions(schema)
        assert texts, deployment.name
        for text in texts:
            outside_code = re.sub(r"`[^`]*`", "", text)
            assert not re.search(r"<[A-Za-z/!?]", outside_code), (deployment.name, text)
        customers = schema["properties"]["customers"]["description"]
        for source in ("CSV", "JSONL", "Parquet", "postgresql://"):
            assert source in customers, (deployment.name, customers)
    out = [t for t in descriptions(deployments[0]._parameter_openapi_schema.model_dump())
           if t.startswith("Output folder")]
    assert out == ["Output folder; empty means `out/CAMPAIGN/RUN_ID` under the content root."]


@pytest.mark.parametrize("verb", ["run", "preview", "versions", "validate"])
def test_the_customers_help_names_every_source(verb: str) -> None:
    from conftest import run_cli

    rc, stdout, stderr = run_cli(verb, "--help", env={"COLUMNS": "250"})
    assert rc == 0, stderr
    line = " ".join(stdout.split())
    for source in ("CSV", "JSONL", "Parquet", "postgresql://"):
        assert source in line, (verb, source)
    assert "CSV or JSONL)" not in line


def run_in_its_process(run_id: str, root: Path, allow: tuple[str, ...] = ()
                       ) -> subprocess.CompletedProcess[str]:
    """Execute a flow run the way serve's runner does, confined like serve's runs."""
    from prefect.settings import PREFECT_API_URL

    from edition.run.roots import served_environment

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= served_environment(root, allow) | {
        "PREFECT__FLOW_RUN_ID": run_id, "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_COLOR": "false", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "prefect.engine"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def deployment_id(prefect_harness: None) -> str:
    from prefect.deployments.runner import EntrypointType

    from flows.campaign import send_campaign

    deployment = send_campaign.to_deployment(name="form-test",
                                             entrypoint_type=EntrypointType.MODULE_PATH)
    return str(deployment.apply())


def test_an_smtp_target_the_serve_does_not_allow_is_refused_with_the_command_to_allow_it(
        deployment_id: str, sample_root: Path) -> None:
    """It failed with two tracebacks; now one line says which --allow serve needs, the run
    ends Failed with that message, and the name typed in the form is kept."""
    from prefect.client.orchestration import get_client

    before = sorted((sample_root / "out").rglob("*")) if (sample_root / "out").exists() else []
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            deployment_id, name="Ana's test send", parameters={
                "campaign": "weekly-newsletter", "dry_run": False, "confirm_send": True,
                "to": "smtp://127.0.0.1:2525"})
        done = run_in_its_process(str(run.id), sample_root)
        final = client.read_flow_run(run.id)
    output = done.stdout + done.stderr
    assert final.state is not None and final.state.is_failed(), output
    wanted = "restart serve as: edition serve --allow smtp://127.0.0.1:2525"
    assert wanted in (final.state.message or ""), final.state.message
    assert wanted in output and "refused before any work" in output
    assert "Traceback" not in output, output
    assert final.name == "Ana's test send"
    after = sorted((sample_root / "out").rglob("*")) if (sample_root / "out").exists() else []
    assert after == before  # nothing written


def test_the_run_name_typed_in_the_form_is_kept_and_a_made_up_one_replaced(
        deployment_id: str, sample_root: Path, sample_customers: Path,
        tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows.campaign import RunSettings, made_up_name, send_campaign

    with get_client(sync_client=True) as client:
        typed = client.create_flow_run_from_deployment(
            deployment_id, name="Spring check by Ana", parameters={
                "campaign": "weekly-newsletter", "customers": str(sample_customers),
                "limit": 3, "advanced": {"out": str(tmp_path / "typed")}})
        done = run_in_its_process(str(typed.id), sample_root, (str(tmp_path),))
        assert done.returncode == 0, done.stdout + done.stderr
        kept = client.read_flow_run(typed.id)
    assert kept.state is not None and kept.state.is_completed()
    assert kept.name == "Spring check by Ana"
    # a run nobody named gets the campaign's name, not Prefect's two made-up words
    state = send_campaign(campaign=str(sample_root / "campaigns" / "weekly-newsletter.yaml"),
                          customers=str(sample_customers), limit=3,
                          advanced=RunSettings(out=str(tmp_path / "unnamed")),
                          return_state=True)
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(state.state_details.flow_run_id).name == \
            "weekly-newsletter-dry-run"
    assert not made_up_name("Spring check by Ana") and not made_up_name("nov-newsletter")
