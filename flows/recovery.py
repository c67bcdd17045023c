"""What a run that died leaves in Prefect, made right.

The run folder is the engine's to repair (edition/run/repair.py: `repair`, `recover_runs`):
every run of a campaign, from the CLI or a flow, first repairs the folders of its
campaign whose run is gone, once. This module adds the Prefect side, as hooks:

- a flow run still shown as running whose folder was repaired is set to Crashed
  (`crashed`);
- a folder owned by another host is repaired once the Prefect API says its flow run is
  over (`over_elsewhere`);
- `on_stopped` (the flow's on_cancellation / on_crashed hook) repairs the folder of a
  run that Prefect cancelled or saw crash, once its process is gone;
- at `edition serve`'s start and stop (`recover_served`, holding edition/run/serve_lock.py's
  lock: two serves would take each other's runs for dead ones), the served campaigns'
  folders are repaired (with the send ledger, as a run does: `recover_campaign`) and the
  flow runs the previous serve left in Pending or Running are fixed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edition.content.campaign import Campaign
from edition.run.campaigns import Served
from edition.run.repair import Repair, recover_campaign_runs
from edition.run.serve_lock import live_flow_runs, still_running

logger = logging.getLogger("prefect.edition.recovery")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _flow_run_state(flow_run_id: str) -> str | None:
    """The flow run's state type from the Prefect API, or None if unknown."""
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
        return run.state.type.value if run.state else None
    except Exception:
        return None


def crash_flow_run(flow_run_id: str, message: str) -> bool:
    """Set a flow run still shown as running/pending to Crashed."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return False
            client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)
        return True
    except Exception as exc:
        logger.warning("could not mark flow run %s as crashed: %s", flow_run_id, exc)
        return False


def crashed(info: dict[str, Any], summary: Repair) -> None:
    """A dead run's folder was repaired: its flow run, if still shown running, crashed."""
    if info.get("flow_run_id"):
        crash_flow_run(str(info["flow_run_id"]),
                       f"Run interrupted (its process is gone); output made consistent: "
                       f"{summary}")


def over_elsewhere(info: dict[str, Any]) -> bool:
    """Whether the flow run of another host's run is over, as the Prefect API says."""
    return bool(info.get("flow_run_id")) and _flow_run_state(str(info["flow_run_id"])) in FINAL


def recover_campaign(campaign: Campaign) -> list[Repair]:
    """Repair the campaign's run folders whose run died; crash their flow runs."""
    return recover_campaign_runs(campaign, on_repaired=crashed, over_elsewhere=over_elsewhere)


def on_stopped(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook: a cancelled or crashed send-campaign run leaves a consistent folder."""
    ref = (getattr(flow_run, "parameters", None) or {}).get("campaign")
    if not ref:
        return
    try:
        from edition.content.campaign import load_campaign
        from edition.run.roots import resolve_campaign

        campaign = load_campaign(resolve_campaign(str(ref)) or str(ref))  # a name or a file
    except Exception as exc:
        logger.warning("cannot repair the run of %s: %s", ref, exc)
        return
    out = campaign.root / "out" / campaign.name
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the flow's process may take a moment to die
        if not still_running(out, str(flow_run.id)):
            break
        time.sleep(0.5)
    for summary in recover_campaign_runs(campaign, over_elsewhere=over_elsewhere):
        logger.warning("%s: output folder repaired: %s", state.name, summary)


@dataclass
class Orphans:
    """Flow runs a stopped serve left in Pending or Running."""

    rescheduled: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)


def recover_flow_runs(deployment_names: list[str], out_root: Path) -> Orphans:
    """Fix the Prefect state of runs the previous serve process left behind.

    Call it only while holding the ServeLock. A run still Pending never started its
    flow: it goes back to Scheduled (now), so this serve runs it. A run still Running
    whose process is gone is set to Crashed (its run folder, if it has one, has been
    repaired by `recover_runs`). Both release the deployment's concurrency slot, which
    would otherwise stay taken until the server's lease expires.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed, Scheduled

    result = Orphans()
    live = live_flow_runs(out_root)
    with get_client(sync_client=True) as client:
        ids = []
        for name in deployment_names:
            try:
                ids.append(client.read_deployment_by_name(name).id)
            except Exception:  # not registered yet: nothing can be left behind
                continue
        if not ids:
            return result
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=ids),
            state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.PENDING, StateType.RUNNING]))), limit=200)
        for run in runs:
            if str(run.id) in live:
                continue
            if run.state and run.state.type == StateType.PENDING:
                client.set_flow_run_state(run.id, Scheduled(
                    message="edition serve stopped before this run started; resubmitted"),
                    force=True)
                result.rescheduled.append(run.name)
            else:
                client.set_flow_run_state(run.id, Crashed(
                    message="Run interrupted: the process running it is gone "
                            "(edition serve or the machine stopped mid-run)"), force=True)
                result.crashed.append(run.name)
    return result


def deployment_names(served: Served) -> list[str]:
    return [f"send-campaign/{c.name}" for _, c in served.campaigns] + [
        "preview-customer/preview-customer"]


def recover_served(root: Path, served: Served, log: Any) -> None:
    """At serve's start and stop: repair the served campaigns' run folders whose run
    died, and fix the states of the flow runs a stopped serve left behind."""
    for _file, campaign in served.campaigns:
        for repaired in recover_campaign(campaign):
            log.warning("interrupted run repaired: %s", repaired)
    try:
        orphans = recover_flow_runs(deployment_names(served), root / "out")
    except Exception as exc:
        log.warning("could not check for runs left behind by serve: %s", exc)
        return
    if orphans.rescheduled:
        log.warning("runs that had not started when serve stopped, resubmitted: %s",
                    ", ".join(orphans.rescheduled))
    if orphans.crashed:
        log.warning("runs whose process is gone, marked Crashed: %s",
                    ", ".join(orphans.crashed))
