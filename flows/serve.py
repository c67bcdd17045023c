"""`edition serve`: every campaign in campaigns/ becomes a Prefect deployment.

For each campaign file that passes the same checks as `edition run` (campaign, catalog,
templates), a deployment of `send-campaign` named after the campaign: its `campaign`
parameter fixed to that file, its schedule (cron + time zone) when the campaign has one,
and at most one run at a time (`concurrency_limit=1`). Plus one deployment of
`preview-customer` (named `preview-customer`) whose campaign is a choice of the served
campaigns. An invalid campaign is reported (file:line message) and skipped; the others
are served. Restarting serve picks up added and edited campaign files.

At start-up, run folders left behind by runs that died (serve or the machine stopped
mid-run) are repaired (flows/recovery.py), and the output folder (content root's out/)
is published read-only over HTTP on 127.0.0.1 (`publish`: web/outputs.py, which
`edition serve` passes in) so the links in the runs' artifacts open in the browser next
to the Prefect UI.

`python -m flows.serve --prefect-yaml [ROOT]` prints the equivalent prefect.yaml for
teams that deploy with `prefect deploy` and a process work pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edition.databases import masked
from edition.errors import ContentError, UsageError
from edition.run.campaigns import Served, find_campaigns, relative
from edition.run.roots import ALLOW_ENV, ROOT_ENV, Roots

OUTPUT_PORT_ENV = "EDITION_OUTPUT_PORT"
PREVIEW = "preview-customer"
# Publishes a folder read-only over HTTP on loopback: (folder, port or None for the
# default) -> (a server with shutdown(), its URL)
Publish = Callable[[Path, "int | None"], tuple[Any, str]]


def _logger() -> Any:
    from prefect.logging import get_logger

    return get_logger("edition.serve")


def _entrypoint_type(module_file: str) -> Any:
    """A file path (flows/campaign.py:send_campaign) when serve runs from the repository,
    else the module path (flows.campaign.send_campaign) rather than a ../../ path."""
    from prefect.deployments.runner import EntrypointType

    try:
        Path(module_file).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return EntrypointType.MODULE_PATH
    return EntrypointType.FILE_PATH


def _version(file: Path) -> str:
    """Changes when the campaign file changes, so the UI shows an edit as a new version."""
    return hashlib.sha256(file.read_bytes()).hexdigest()[:12]


def campaign_deployment(file: Path, campaign: Any, *, work_pool: str | None = None,
                        job_variables: dict[str, Any] | None = None) -> Any:
    """`send-campaign` deployment for one campaign."""
    from prefect.schedules import Cron

    from flows.campaign import send_campaign

    schedules = None
    when = "no schedule: run it from the UI or the API"
    if campaign.schedule:
        cron, tz = campaign.schedule.cron, campaign.schedule.timezone
        schedules = [Cron(cron, timezone=tz)]
        when = f"scheduled `{cron}` ({tz})"
    description = (f"{campaign.description or 'Campaign ' + campaign.name}\n\n"
                   f"Campaign file `{relative(file, campaign.root)}`; {when}. Dry run unless "
                   f"dry_run is off and confirm_send is on. One run at a time.")
    deployment = send_campaign.to_deployment(
        name=campaign.name,
        parameters={"campaign": campaign.name},
        schedules=schedules,
        concurrency_limit=1,
        tags=["edition", "campaign", campaign.name],
        description=description,
        version=_version(file),
        entrypoint_type=_entrypoint(send_campaign, work_pool),
        work_pool_name=work_pool,
        job_variables=job_variables,
    )
    # The deployment is this campaign: its name is shown but cannot be changed in the form
    # (what prefect.utilities.annotations.freeze does, which to_deployment in 3.8 sends as
    # a list instead of unwrapping it). The formats field starts with the campaign's own.
    props = deployment._parameter_openapi_schema.properties
    props["campaign"].update({"readOnly": True, "enum": [campaign.name],
                              "default": campaign.name})
    props["formats"]["default"] = list(campaign.formats)
    send_switches_first(props)
    return deployment


def send_switches_first(props: dict[str, Any]) -> None:
    """The form lists fields by `position`: what decides whether mail leaves comes right
    after the campaign. The flow's signature keeps its order, for callers passing
    arguments by position."""
    first = ["campaign", "dry_run", "confirm_send"]
    rest = sorted((name for name in props if name not in first),
                  key=lambda name: props[name].get("position", 0))
    for position, name in enumerate([*(n for n in first if n in props), *rest]):
        props[name]["position"] = position


def preview_deployment(campaigns: list[Any], *, work_pool: str | None = None,
                       job_variables: dict[str, Any] | None = None) -> Any:
    """`preview-customer` deployment; its campaign parameter is a choice of the names."""
    from flows.preview import preview_customer

    names = [c.name for c in campaigns]
    deployment = preview_customer.to_deployment(
        name=PREVIEW,
        parameters={"campaign": names[0]} if names else None,
        tags=["edition", "preview"],
        entrypoint_type=_entrypoint(preview_customer, work_pool),
        work_pool_name=work_pool,
        job_variables=job_variables,
        description="One customer's edition as a dry run: the modules chosen for each slot "
                    "and why, and the rendered HTML page. Nothing is sent.",
    )
    if names:
        schema = deployment._parameter_openapi_schema  # the form the UI draws
        schema.properties["campaign"].update({"enum": names, "default": names[0]})
    return deployment


def _entrypoint(flow: Any, work_pool: str | None) -> Any:
    """A worker imports the installed package (flows.campaign.send_campaign); serve may
    name the file when it runs from the repository."""
    from prefect.deployments.runner import EntrypointType

    if work_pool:
        return EntrypointType.MODULE_PATH
    return _entrypoint_type(sys.modules[flow.__module__].__file__)


def build_deployments(root: Path | str = ".", *, work_pool: str | None = None,
                      job_variables: dict[str, Any] | None = None) -> tuple[list[Any], Served]:
    """The deployments serve would register, and what it found (for tests and logs)."""
    served = find_campaigns(root)
    deployments = [campaign_deployment(f, c, work_pool=work_pool, job_variables=job_variables)
                   for f, c in served.campaigns]
    if served.campaigns:
        deployments.append(preview_deployment([c for _, c in served.campaigns],
                                              work_pool=work_pool, job_variables=job_variables))
    return deployments, served


# -- serve -------------------------------------------------------------------------

def serve_campaigns(root: Path | str = ".", *, output_port: int | None = None,
                    limit: int | None = None, allow: tuple[str, ...] = (),
                    work_pool: str | None = None, publish: Publish | None = None) -> None:
    """Register every valid campaign (and the preview) with Prefect and run them.

    The runs' `customers` and `out` are confined to the content root (and `allow`): a
    form anyone with UI access can fill must not read or write elsewhere on this machine.
    With `work_pool`, the deployments go to that pool (its workers run them, with the
    same confinement in their job's environment) and serve returns. `publish` serves
    the output folder over HTTP (without it, the artifacts' links are file:// links).
    """
    from prefect.settings import PREFECT_API_URL

    from flows.ending import OUTPUT_ROOT_ENV, OUTPUT_URL_ENV

    log = _logger()
    root = Path(root).resolve()
    environment = served_environment(root, allow)
    served = find_campaigns(root)
    for problem in served.problems:
        log.error("invalid campaign skipped: %s", problem)
    if not served.campaigns:
        raise ContentError(f"no valid campaign to serve in {root / 'campaigns'}",
                           root / "campaigns")
    check_api_access(PREFECT_API_URL.value(), log)
    if work_pool:
        deploy_to_pool(root, served, work_pool, environment, log)
        return
    from edition.run.serve_lock import ServeLock

    deployments, _ = build_deployments(root)
    lock = ServeLock(root / "out")
    lock.acquire(PREFECT_API_URL.value())
    recover(root, served, log)
    if output_port is None and os.environ.get(OUTPUT_PORT_ENV):
        output_port = int(os.environ[OUTPUT_PORT_ENV])
    server, url = publish(root / "out", output_port) if publish else (None, "(not published)")
    if server is not None:
        os.environ[OUTPUT_URL_ENV] = url        # inherited by the flow-run processes
        os.environ[OUTPUT_ROOT_ENV] = str(root / "out")
    os.environ.update(environment)
    log.info("serving %d campaign(s) from %s: %s (+ %s); output folder at %s",
             len(served.campaigns), root, ", ".join(c.name for _, c in served.campaigns),
             PREVIEW, url)
    stopper = Stopper(lock.release)
    try:
        with _quick_pickup():
            run_deployments(deployments, limit=limit, stopper=stopper)
    finally:
        stopper.arm()   # whatever stopped serve, it is gone within STOP_SECONDS
        if server is not None:
            server.shutdown()
        # Prefect's runner kills the flow-run processes it started when it stops; put
        # their folders and states right now rather than at the next start.
        _wait_for_children(2.0)
        recover(root, served, log)
        lock.release()


# How long serve may take to stop once told to (SIGTERM, Ctrl-C): pausing the schedules,
# stopping the flow-run processes and marking their runs are API calls, and a Prefect
# server that stopped answering kept serve waiting for minutes (each call retried, 60 s
# apiece). Past this, serve kills what it started and exits; the next start repairs the
# run folders and marks the runs Crashed (flows/recovery.py).
STOP_SECONDS = 5.0


class Stopper:
    """Ends this process at most STOP_SECONDS after `arm()`: kills every process serve
    started (flow runs and their workers, an ephemeral Prefect server), runs `release`
    (the serve lock) and exits. Armed by SIGTERM and by serve's own shutdown."""

    def __init__(self, release: Any, seconds: float | None = None):
        self.release = release
        self.seconds = STOP_SECONDS if seconds is None else seconds
        self._armed = threading.Event()

    def arm(self) -> None:
        if not self._armed.is_set():
            self._armed.set()
            threading.Thread(target=self._countdown, name="edition-stop",
                             daemon=True).start()

    def _countdown(self) -> None:
        import time

        time.sleep(self.seconds)
        self.force()

    def force(self) -> None:
        try:
            _logger().warning("serve did not stop within %.0f s: stopping its processes "
                              "and exiting; the next start repairs interrupted runs",
                              self.seconds)
            end_children(1.0)
            self.release()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(0)


def end_children(grace: float) -> None:
    """SIGTERM every process under this one, SIGKILL those still there after `grace`."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=grace)


def run_deployments(deployments: list[Any], *, limit: int | None, stopper: Stopper) -> None:
    """prefect.serve, with a SIGTERM that stops it like Ctrl-C does, and in bounded time.

    Prefect's own SIGTERM handler awaits nothing (`Runner.stop` returns an un-awaited
    coroutine inside the loop) and then raises SystemExit through whatever callback
    runs; the shutdown that follows waited on the API without a bound. Here SIGTERM
    cancels the serving task, as Ctrl-C does, and arms the stopper."""
    import asyncio
    import signal

    from prefect.runner import Runner

    main: dict[str, Any] = {}

    class ServeRunner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            self._logger.info("SIGTERM received: stopping (at most %.0f s)", stopper.seconds)
            stopper.arm()
            task, loop = main.get("task"), main.get("loop")
            if task is None or loop is None:
                raise KeyboardInterrupt
            loop.call_soon_threadsafe(task.cancel)

    runner = ServeRunner(pause_on_shutdown=True, limit=limit)
    for deployment in deployments:
        runner.add_deployment(deployment)

    async def start() -> None:
        main["task"], main["loop"] = asyncio.current_task(), asyncio.get_running_loop()
        await runner.start()

    names = ", ".join(f"{d.flow_name}/{d.name}" for d in deployments)
    print(f"Your deployments are being served and polling for scheduled runs: {names}",
          flush=True)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        asyncio.run(start())
    except (KeyboardInterrupt, asyncio.CancelledError):
        _logger().info("serve stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)


POLL_SECONDS = 1


def _quick_pickup() -> Any:
    """Serve asks the server for runs to start every second, not Prefect's 10: a run
    started from the UI's button waited up to 10 s before anything happened (one small
    API request per second). PREFECT_RUNNER_POLL_FREQUENCY in the environment wins."""
    import contextlib

    from prefect.settings import PREFECT_RUNNER_POLL_FREQUENCY, temporary_settings

    if os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY"):
        return contextlib.nullcontext()
    return temporary_settings(updates={PREFECT_RUNNER_POLL_FREQUENCY: POLL_SECONDS})


def served_environment(root: Path, allow: tuple[str, ...] = ()) -> dict[str, str]:
    """What the runs serve starts find in their environment: the content root (campaign
    names are looked up there) and where they may read and write (edition/run/roots.py)."""
    root = Path(root).resolve()
    return {ROOT_ENV: str(root), ALLOW_ENV: Roots.of(root, allow).to_env()}


def deploy_to_pool(root: Path, served: Served, pool: str, environment: dict[str, str],
                   log: Any) -> list[str]:
    """Register the deployments with a work pool; its workers run them (in `root`)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            raise UsageError(f"work pool {pool!r} not found; create it first: "
                             f"prefect work-pool create {pool} --type process") from None
    deployments, _ = build_deployments(root, work_pool=pool, job_variables={
        "env": environment, "working_dir": str(root)})
    names = []
    for deployment in deployments:
        deployment.apply()
        names.append(f"{deployment.flow_name}/{deployment.name}")
    log.info("registered %d deployment(s) with work pool %s: %s; start a worker to run "
             "them: prefect worker start --pool %s", len(names), pool, ", ".join(names), pool)
    return names


def check_api_access(api_url: str | None, log: Any) -> None:
    """Say clearly when the server wants a password this process lacks, and warn when a
    server others can reach asks for none (anyone reaching it could start a send)."""
    import base64

    import httpx
    from prefect.settings import PREFECT_API_AUTH_STRING

    if not api_url:
        return  # Prefect's ephemeral server, in this process
    shown = masked(api_url)   # what the messages say: never a password in the URL
    probe = api_url.rstrip("/") + "/admin/version"
    auth = PREFECT_API_AUTH_STRING.value()
    try:
        open_door = httpx.get(probe, timeout=30).status_code != 401
        if auth and not open_door:
            token = base64.b64encode(str(auth).encode("utf-8")).decode("ascii")
            if httpx.get(probe, timeout=30, headers={"Authorization": f"Basic {token}"}
                         ).status_code == 401:
                raise UsageError(f"the Prefect server at {shown} refused "
                                 f"PREFECT_API_AUTH_STRING; set it to the server's "
                                 f"PREFECT_SERVER_API_AUTH_STRING (user:password)")
    except httpx.HTTPError:
        return  # Prefect's own client says the server cannot be reached, and retries
    if not open_door and not auth:
        raise UsageError(f"the Prefect server at {shown} asks for a password: set "
                         f"PREFECT_API_AUTH_STRING to its PREFECT_SERVER_API_AUTH_STRING "
                         f"(user:password)")
    if open_door and not _loopback(api_url):
        log.warning("the Prefect server at %s asks for no password: anyone who reaches it "
                    "can start a send. Start the server with "
                    "PREFECT_SERVER_API_AUTH_STRING=user:password and set "
                    "PREFECT_API_AUTH_STRING to the same here (docs/prefect-ui.md)", shown)


def _loopback(url: str | None) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(url or "").hostname or ""
    return host in {"127.0.0.1", "localhost", "::1"}


def deployment_names(served: Served) -> list[str]:
    return [f"send-campaign/{c.name}" for _, c in served.campaigns] + [f"{PREVIEW}/{PREVIEW}"]


def recover(root: Path, served: Served, log: Any) -> None:
    """Repair run folders whose run died; fix the states of runs left behind."""
    from flows.recovery import recover_campaign, recover_flow_runs

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


def _wait_for_children(timeout: float) -> None:
    import multiprocessing
    import time

    deadline = time.monotonic() + timeout
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.2)


# -- prefect.yaml ------------------------------------------------------------------

YAML_HEADER = """\
# Deployments for teams that deploy with `prefect deploy` instead of `edition serve`
# (which registers the same deployments and runs them itself). One deployment of
# send-campaign per campaign in campaigns/, named after it, with its schedule and at most
# one run at a time; plus preview-customer. Regenerate after adding or editing a campaign:
#
#   python -m flows.serve --prefect-yaml > prefect.yaml
#
# Use it (from this folder, with PREFECT_API_URL set):
#
#   prefect work-pool create edition --type process
#   prefect deploy --all
#   prefect worker start --pool edition
#
# No `pull` section: `prefect deploy` adds a set_working_directory step for the folder it
# runs in, so the worker finds flows/ and the campaigns (by name, in campaigns/) there.
# Runs deployed this way may read and write anywhere the worker can; `edition serve
# --work-pool edition` registers the same deployments confined to the content root.
"""


def prefect_yaml(root: Path | str = ".") -> str:
    """The prefect.yaml text equivalent to what serve registers."""
    import yaml

    root = Path(root).resolve()
    served = find_campaigns(root)
    pool = {"name": "edition", "work_queue_name": "default"}
    deployments: list[dict[str, Any]] = []
    for file, campaign in served.campaigns:
        rel = relative(file, root)
        entry: dict[str, Any] = {
            "name": campaign.name,
            "description": f"{campaign.description or 'Campaign ' + campaign.name} "
                           f"({rel}); dry run unless dry_run is off and confirm_send is on.",
            "entrypoint": "flows/campaign.py:send_campaign",
            "parameters": {"campaign": campaign.name},
            "tags": ["edition", "campaign", campaign.name],
            "concurrency_limit": 1,
        }
        if campaign.schedule:
            entry["schedules"] = [{"cron": campaign.schedule.cron,
                                   "timezone": campaign.schedule.timezone}]
        entry["work_pool"] = dict(pool)
        deployments.append(entry)
    if served.campaigns:
        deployments.append({
            "name": PREVIEW,
            "description": "One customer's edition as a dry run, with the reason for "
                           "every module. Nothing is sent.",
            "entrypoint": "flows/preview.py:preview_customer",
            "parameters": {"campaign": served.campaigns[0][1].name},
            "tags": ["edition", "preview"],
            "work_pool": dict(pool),
        })
    document = {"name": "edition", "prefect-version": _prefect_version(),
                "build": None, "push": None, "deployments": deployments}
    return YAML_HEADER + "\n" + yaml.safe_dump(document, sort_keys=False, width=100)


def _prefect_version() -> str:
    import prefect

    return ".".join(prefect.__version__.split(".")[:2])


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--prefect-yaml"]:
        root = args[1] if len(args) > 1 else "."
        served = find_campaigns(root)
        for problem in served.problems:
            print(f"skipped: {problem}", file=sys.stderr)
        sys.stdout.write(prefect_yaml(root))
        return 0
    serve_campaigns(args[0] if args else ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
