"""send-campaign with sending on: a dry run, a pause for the ApprovalForm, then the send.

Under Prefect's test harness (the UI path, with a real server and Chromium, is
test_approval_ui.py): the form is answered through the API (`resume_flow_run`) from a
thread while the flow waits in this process, and the editions go to an aiosmtpd sink.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_delivery import smtp_sink
from fixtures_sending import CAMPAIGN, customers, set_delivery, site  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(600)


def answer_when_paused(answer: dict[str, Any] | None, seen: dict[str, Any]) -> threading.Thread:
    """A thread that waits for a paused flow run and resumes it with `answer`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterState,
    )
    from prefect.client.schemas.filters import FlowRunFilterStateName as Name
    from prefect.flow_runs import resume_flow_run

    def wait() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            with get_client(sync_client=True) as client:
                paused = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(name=Name(any_=["Paused"]))))
                if paused:
                    run = paused[0]
                    seen["id"] = run.id
                    seen["artifacts"] = {a.key: a for a in client.read_artifacts(
                        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
                            any_=[run.id]))) if a.key}
                    if answer is not None:
                        resume_flow_run(run.id, run_input=answer)
                    return
            time.sleep(0.2)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def sending_run(site: Path, customers: Path, out: Path, answer: dict[str, Any] | None,
                **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    from flows.campaign import RunSettings, send_campaign

    seen: dict[str, Any] = {}
    thread = answer_when_paused(answer, seen)
    settings = {"out": str(out)} | kwargs.pop("advanced", {})
    campaign = kwargs.pop("campaign", site / CAMPAIGN)
    state = send_campaign(campaign=str(campaign), customers=str(customers),
                          advanced=RunSettings(**settings), return_state=True, **kwargs)
    thread.join(30)
    assert seen.get("id"), "the run never paused"
    return state, seen


def final_state(flow_run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def test_a_send_waits_for_its_approver(prefect_harness: None, site: Path,
                                       customers: Callable, tmp_path: Path) -> None:
    import prefect

    path = customers(10)
    with smtp_sink() as (port, sink):
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}"})
        first = tmp_path / "first"
        state, seen = sending_run(site, path, first, {"approve": True, "approver": "Dee Approver",
                                                      "note": "all good"},
                                  dry_run=False, confirm_send=True)
        assert state.is_completed(), state
        result = state.result()
        assert result["approved_by"] == "Dee Approver" and result["counts"] == {"sent": 10}
        assert len(sink.messages) == 10
        approval = json.loads((first / "approval.json").read_text())
        assert approval["approved_by"] == "Dee Approver" and approval["note"] == "all good"
        for key in ("review-weekly-newsletter", "warnings-weekly-newsletter",
                    "changes-weekly-newsletter", "editions-weekly-newsletter",
                    "report-weekly-newsletter"):
            assert key in seen["artifacts"], (key, sorted(seen["artifacts"]))
        assert "No earlier approved or sent run" in seen["artifacts"][
            "changes-weekly-newsletter"].data
        assert "Review before sending" in seen["artifacts"]["review-weekly-newsletter"].data

        # rejected in the form: nothing leaves, the run ends Cancelled with the reason
        second = tmp_path / "second"
        state, seen = sending_run(site, path, second, {"approve": False, "approver": "Eve",
                                                       "note": "wrong offer"},
                                  dry_run=False, confirm_send=True)
        assert state.is_cancelled(), state
        assert state.message == "rejected by Eve: wrong offer; nothing was sent"
        assert final_state(seen["id"]).is_cancelled()
        assert len(sink.messages) == 10
        assert not (second / "approval.json").exists() and not (second / "sends").exists()
        assert "last approved or sent run" in seen["artifacts"]["changes-weekly-newsletter"].data
        assert str(first.name) in seen["artifacts"]["changes-weekly-newsletter"].data

        # approval: required, started by its schedule (dry_run left on): it waits as well
        # (another file of the same campaign: this process keeps each file's plan)
        data = yaml.safe_load((site / CAMPAIGN).read_text())
        required = site / "campaigns" / "weekly-required.yaml"
        required.write_text(yaml.safe_dump(data | {"approval": "required"}))
        third = tmp_path / "third"
        with prefect.tags("auto-scheduled"):
            state, seen = sending_run(site, path, third, {"approve": True, "approver": "Fay"},
                                      mailing="issue-2", campaign=required)
        assert state.is_completed(), state
        assert state.result()["mailing"] == "issue-2" and len(sink.messages) == 20

        # nobody answers: Cancelled when the time is up, nothing sent
        fourth = tmp_path / "fourth"
        state, seen = sending_run(site, path, fourth, None, dry_run=False, confirm_send=True,
                                  mailing="issue-3",
                                  advanced={"approval_timeout_hours": 8 / 3600})
        assert state.is_cancelled(), state
        assert state.message.startswith("no approval within") and "nothing was sent" in \
            state.message
        assert final_state(seen["id"]).is_cancelled()
        assert len(sink.messages) == 20 and not (fourth / "sends").exists()


def when_paused(action: Callable[[Any], None], seen: dict[str, Any],
                stop: threading.Event) -> threading.Thread:
    """A thread that, once a flow run pauses, calls `action(flow_run_id)` (until `stop`)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState
    from prefect.client.schemas.filters import FlowRunFilterStateName as Name

    def wait() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not stop.is_set():
            with get_client(sync_client=True) as client:
                paused = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(name=Name(any_=["Paused"]))))
            if paused:
                seen["id"] = paused[0].id
                action(paused[0].id)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def test_unsigned_links_are_refused_before_the_pause(prefect_harness: None, site: Path,
                                                     customers: Callable, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17, finding 1: no approval can make unsigned links sendable, so the run ends
    Failed with the reason instead of waiting for one; nothing leaves."""
    from prefect.flow_runs import resume_flow_run

    from flows.campaign import RunSettings, send_campaign

    path, out = customers(10), tmp_path / "unsigned"
    monkeypatch.delenv("EDITION_UNSUBSCRIBE_SECRET")
    seen: dict[str, Any] = {}
    stop = threading.Event()
    approver = when_paused(lambda run: resume_flow_run(run, run_input={
        "approve": True, "approver": "Dee"}), seen, stop)
    with smtp_sink() as (port, sink):
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}"})
        try:
            state = send_campaign(campaign=str(site / CAMPAIGN), customers=str(path),
                                  dry_run=False, confirm_send=True, return_state=True,
                                  advanced=RunSettings(out=str(out),
                                                       approval_timeout_hours=60 / 3600))
        finally:
            stop.set()
            approver.join(30)
        assert state.is_failed(), state
        assert "cannot be sent as it is" in state.message and "unsigned" in state.message
        assert "nothing was sent" in state.message
        assert "id" not in seen, "nobody should be asked to approve what cannot be sent"
        assert sink.messages == [] and not (out / "approval.json").exists()
        assert "Cannot be sent as it is" in (out / "report.md").read_text()


def test_a_rerender_during_the_pause_is_refused(prefect_harness: None, site: Path,
                                                customers: Callable, tmp_path: Path) -> None:
    """Issue 17, findings 2 and 22: the folder is held while the approver reads (a day,
    perhaps): a re-render with --overwrite is refused and the reviewed editions are sent;
    the review compares with the last approved run, although --out put it elsewhere."""
    from email.parser import BytesHeaderParser

    from fixtures_sending import edition, make_customers, manifest, run_args
    from prefect.flow_runs import resume_flow_run

    path = customers(10)
    others = make_customers(10, tmp_path / "others.csv", seed=99)
    earlier = tmp_path / "elsewhere" / "nov-23"
    with smtp_sink() as (port, sink):
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}"})
        assert edition(*run_args(path, earlier, "--limit", 3), cwd=site)[0] == 0
        assert edition("approve", earlier, "--by", "Ann", "--yes", cwd=site)[0] == 0
        assert edition("send", earlier, "--yes", cwd=site)[0] == 0
        out = site / "out" / "review"
        attempt: dict[str, Any] = {}

        def rerender_then_approve(run: Any) -> None:
            attempt["rerender"] = edition(*run_args(others, out), "--overwrite", cwd=site)
            resume_flow_run(run, run_input={"approve": True, "approver": "Dee"})

        seen: dict[str, Any] = {}
        stop = threading.Event()
        thread = when_paused(rerender_then_approve, seen, stop)
        try:
            from flows.campaign import RunSettings, send_campaign

            state = send_campaign(campaign=str(site / CAMPAIGN), customers=str(path),
                                  dry_run=False, confirm_send=True, return_state=True,
                                  advanced=RunSettings(out=str(out)))
        finally:
            stop.set()
            thread.join(60)
        code, stdout, stderr = attempt["rerender"]
        assert code == 1 and "is using this run folder" in stderr, stdout + stderr
        assert state.is_completed(), state
        reviewed = set()
        for row in manifest(out):
            to = str(BytesHeaderParser().parsebytes((out / row["files"]["eml"]).read_bytes())
                     ["To"])
            reviewed.add(to.rpartition("<")[2].rstrip(">"))
        assert len(reviewed) == 10   # (the earlier run mailed 3 of them another mailing)
        assert set(sink.received) == reviewed and len(sink.messages) == 3 + 10
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        with get_client(sync_client=True) as client:
            artifacts = {a.key: a for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
                    any_=[seen["id"]]))) if a.key}
        changes = artifacts["changes-weekly-newsletter"].data
        assert "No earlier approved or sent run" not in changes
        assert str(earlier) in changes, changes


def test_an_approved_send_is_batched_into_task_runs(prefect_harness: None, site: Path,
                                                    customers: Callable, tmp_path: Path) -> None:
    """Issue 18, item 1: the approval flow's send goes through the same lifecycle as a
    run, its batches `send-batch` task runs on the form's task runner (it was one task
    for the whole send), and every customer is sent once."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    path, out = customers(25), tmp_path / "batched"
    with smtp_sink() as (port, sink):
        set_delivery(site, {"to": f"smtp://127.0.0.1:{port}"})
        state, seen = sending_run(site, path, out, {"approve": True, "approver": "Dee"},
                                  dry_run=False, confirm_send=True,
                                  advanced={"batch_size": 10, "workers": 2})
        assert state.is_completed(), state
        assert state.result()["counts"] == {"sent": 25}
        assert len(sink.messages) == 25 and len(set(sink.received)) == 25
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[seen["id"]])))
    sends = sorted(t.name for t in tasks if t.name.startswith("send-"))
    assert sends == ["send-batch-1", "send-batch-2", "send-batch-3"], sends
    assert all(t.state is not None and t.state.is_completed() for t in tasks
               if t.name.startswith("send-batch")), [(t.name, t.state) for t in tasks]
