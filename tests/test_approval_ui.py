"""Approval in the Prefect UI, with the real parts on loopback.

A `prefect server`, `edition serve` on a copy of the sample content whose newsletter is
delivered to an aiosmtpd sink, and headless Chromium:

- a run started from the UI (Custom run, dry_run off, confirm_send on) renders, pauses
  with its review artifacts, and waits; the approval form is filled in and submitted
  in the browser; the run completes, and the sink holds the approved messages byte for
  byte;
- a second run, rejected in the form, sends nothing and ends Cancelled with the reason.

Screenshots go to a temporary folder. To (re)write the documentation images, run once:

    EDITION_SCREENSHOTS=docs/img pytest -m ui tests/test_approval_ui.py

(EDITION_SCREENSHOTS=1 means docs/img too; a relative folder is taken from the
repository root.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_delivery import SinkHandler, smtp_sink
from test_prefect_ui import CHROMIUM_ARGS, CONTENT, REPO, Stack, free_port, stop, wait_for

pytestmark = [pytest.mark.ui, pytest.mark.soak, pytest.mark.timeout(900)]

CUSTOMERS = 12
CAMPAIGN = "weekly-newsletter"


def screenshot_folder(fallback: Path) -> Path:
    wanted = os.environ.get("EDITION_SCREENSHOTS", "")
    if not wanted:
        return fallback
    folder = REPO / "docs" / "img" if wanted == "1" else Path(wanted)
    return folder if folder.is_absolute() else REPO / folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, SinkHandler]]:
    base = tmp_path_factory.mktemp("approval-ui")
    root, home = base / "site", base / "home"
    home.mkdir()
    for folder in CONTENT:
        shutil.copytree(REPO / folder, root / folder)
    (root / "campaigns" / "invoice.yaml").unlink()   # one deployment is enough here
    port, output_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(home / "prefect"), "PREFECT_API_URL": api,
        "PREFECT_UI_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1", "PREFECT_LOGGING_COLOR": "false",
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2", "EDITION_OUTPUT_PORT": str(output_port),
        "COLUMNS": "200", "NO_COLOR": "1", "NO_PROXY": "127.0.0.1,localhost",
    })
    subprocess.run([sys.executable, "-m", "cli", "sample-data", "--customers", str(CUSTOMERS),
                    "--out", "data/customers.csv", "--seed", "7"], cwd=root, env=env,
                   check=True, capture_output=True, timeout=60)
    shots = screenshot_folder(base / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    stack = Stack(root=root, home=home, api=api, ui=f"http://127.0.0.1:{port}", env=env,
                  shots=shots)
    with smtp_sink() as (smtp_port, sink):
        campaign = root / "campaigns" / f"{CAMPAIGN}.yaml"
        data = yaml.safe_load(campaign.read_text(encoding="utf-8"))
        data["delivery"] = {"to": f"smtp://127.0.0.1:{smtp_port}"}
        campaign.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
                            encoding="utf-8")
        server_log = home / "server.log"
        try:
            with server_log.open("wb") as out:
                stack.server = subprocess.Popen(
                    [sys.executable, "-m", "prefect", "server", "start", "--host",
                     "127.0.0.1", "--port", str(port)], cwd=home, env=env, stdout=out,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

            def healthy() -> bool:
                try:
                    return stack.call("GET", "/health")[0] == 200
                except Exception:
                    return False

            wait_for("the Prefect server", healthy, 180, log=server_log)
            stack.start_serve()
            wait_for("the deployment", lambda: CAMPAIGN in stack.deployments(), 180,
                     log=stack.serve_log)
            yield stack, sink
        finally:
            stop(stack.serve)
            stop(stack.server)


@pytest.fixture(scope="module")
def browser(stack: tuple[Stack, SinkHandler]) -> Iterator[Any]:
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(stack[0].home / "chromium-profile"), executable_path=chromium,
            args=CHROMIUM_ARGS, headless=True, viewport={"width": 1400, "height": 1000},
            timeout=60_000)
        context.set_default_timeout(90_000)
        try:
            yield context
        finally:
            context.close()


def paused_run(stack: Stack, deployment_id: str, skip: set[str]) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        runs = stack.ok("POST", "/flow_runs/filter", {"flow_runs": {
            "deployment_id": {"any_": [deployment_id]}}, "sort": "START_TIME_DESC"})
        paused = [r for r in runs if r["id"] not in skip and r["state"]
                  and r["state"]["type"] == "PAUSED"]
        return paused[0] if paused else None

    return wait_for("a run waiting for approval", find, 300, log=stack.serve_log)


def start_custom_run(page: Any, stack: Stack, deployment_id: str, attempt: int) -> bool:
    """Run -> Custom run, dry_run off, confirm_send on, Submit; True once it is submitted."""
    page.goto(f"{stack.ui}/deployments/deployment/{deployment_id}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run", exact=True).click()
    page.wait_for_url("**/run?**")
    page.get_by_text("confirm_send (Optional)", exact=True).wait_for()
    page.wait_for_timeout(1500)   # the form settles (defaults filled in) before it is used
    for label, checked in (("dry_run (Optional)", "false"), ("confirm_send (Optional)", "true")):
        switch = page.locator(".schema-form-property", has=page.get_by_text(
            label, exact=True)).get_by_role("switch").first
        for _ in range(3):
            if switch.get_attribute("aria-checked") == checked:
                break
            switch.click()
            page.wait_for_timeout(500)
        assert switch.get_attribute("aria-checked") == checked, label
    page.get_by_role("button", name="Submit").click()
    try:
        page.wait_for_url("**/deployments/deployment/**tab=Runs**", timeout=60_000)
    except Exception:   # kept for the failure message, never in docs/img
        page.screenshot(path=str(stack.home / f"custom-run-{attempt}.png"), full_page=True)
        return False
    return True


def answer_form(page: Any, stack: Stack, run_id: str, *, approve: bool, approver: str,
                note: str, shot: str | None = None) -> None:
    """Open the paused run, click Resume, fill in the ApprovalForm and submit it."""
    page.goto(f"{stack.ui}/runs/flow-run/{run_id}")
    page.get_by_text("Paused").first.wait_for()
    page.get_by_role("button", name="Resume").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Review before sending").first.wait_for()

    def field(label: str) -> Any:
        return dialog.locator(".schema-form-property", has=page.get_by_text(label, exact=True))

    field("Approver").locator("textarea, input").first.fill(approver)
    field("Note (Optional)").locator("textarea, input").first.fill(note)
    switch = field("Approve (Optional)").get_by_role("switch").first
    if approve:
        switch.click()
    assert switch.get_attribute("aria-checked") == ("true" if approve else "false")
    if shot:
        page.wait_for_timeout(800)
        page.screenshot(path=shot)
    page.wait_for_timeout(1000)   # the form settles (schema defaults filled in) first

    def answered() -> bool:
        state = stack.flow_run(run_id)["state"]
        return bool(state) and state["type"] != "PAUSED"

    # On a loaded machine a click can land while the form re-renders and be lost; the
    # run's state, not the dialog, says whether the answer arrived. Bounded retries.
    for attempt in range(3):
        if dialog.is_visible():
            dialog.get_by_role("button", name="Submit").click()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not answered():
            page.wait_for_timeout(1000)
        if answered():
            return
        page.screenshot(path=str(stack.home / f"answer-{run_id}-{attempt}.png"),
                        full_page=True)
    raise AssertionError(f"the approval form for {run_id} was not taken: see "
                         f"{stack.home}/answer-{run_id}-*.png")


def test_a_run_from_the_ui_waits_for_approval_in_the_browser(
        stack: tuple[Stack, SinkHandler], browser: Any) -> None:
    stack_, sink = stack
    deployment = stack_.deployment(f"send-campaign/{CAMPAIGN}")
    page = browser.new_page()

    # Run -> Custom run, dry_run off and confirm_send on, Submit
    for attempt in range(3):   # on a busy machine the UI's first requests may fail
        if start_custom_run(page, stack_, deployment["id"], attempt):
            break
    else:
        raise AssertionError("Custom run did not start a run")
    run = paused_run(stack_, deployment["id"], set())
    assert sink.messages == [], "nothing leaves before the approval"

    artifacts = stack_.artifacts(run["id"])
    for key in ("review", "warnings", "changes", "editions", "report", "versions"):
        assert f"{key}-{CAMPAIGN}" in artifacts, (key, sorted(artifacts))
    assert "Review before sending" in artifacts[f"review-{CAMPAIGN}"]["data"]
    page.set_viewport_size({"width": 1400, "height": 1100})
    page.goto(f"{stack_.ui}/runs/flow-run/{run['id']}")
    page.get_by_text("Paused").first.wait_for()
    page.get_by_text("Artifacts", exact=True).first.click()
    page.get_by_text(f"review-{CAMPAIGN}").first.wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(stack_.shots / "approval-paused.png"))

    answer_form(page, stack_, run["id"], approve=True, approver="Dee Approver",
                note="offers and greetings checked",
                shot=str(stack_.shots / "approval-form.png"))
    done = stack_.wait_final(run["id"], 240)
    assert done["state"]["type"] == "COMPLETED", (done["state"], stack_.logs(run["id"]))
    out = next(p.parent for p in (stack_.root / "out" / CAMPAIGN).glob("*/run.json")
               if json.loads(p.read_text())["flow_run_id"] == run["id"])
    approval = json.loads((out / "approval.json").read_text())
    assert approval["approved_by"] == "Dee Approver"
    assert approval["note"] == "offers and greetings checked"
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == CUSTOMERS and len(sink.messages) == CUSTOMERS
    approved = {BytesHeaderParser().parsebytes((out / r["files"]["eml"]).read_bytes())[
        "Message-ID"]: (out / r["files"]["eml"]).read_bytes() for r in rows}
    for _, _, content in sink.messages:
        assert content == approved[BytesHeaderParser().parsebytes(content)["Message-ID"]]
    assert "send-report-weekly-newsletter" in stack_.artifacts(run["id"])

    # a second run, rejected in the form: nothing is sent, Cancelled with the reason
    second = stack_.run_deployment(f"send-campaign/{CAMPAIGN}",
                                   {"dry_run": False, "confirm_send": True,
                                    "mailing": "second-issue"})
    paused_run(stack_, deployment["id"], {run["id"]})
    answer_form(page, stack_, second, approve=False, approver="Eve Editor",
                note="wrong offer for seniors")
    final = stack_.wait_final(second, 240)
    assert final["state"]["type"] == "CANCELLED", final["state"]
    assert final["state"]["message"] == ("rejected by Eve Editor: wrong offer for seniors; "
                                         "nothing was sent")
    assert len(sink.messages) == CUSTOMERS
    assert "last approved or sent run" in stack_.artifacts(second)[f"changes-{CAMPAIGN}"][
        "data"]
    page.close()
    for name in ("approval-paused.png", "approval-form.png"):
        assert (stack_.shots / name).stat().st_size > 10_000
