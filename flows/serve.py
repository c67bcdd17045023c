"""The deployments `edition serve` runs (cli/serve.py owns its process): every campaign
in campaigns/ that passes the same checks as `edition run` (campaign, catalog,
templates) becomes a deployment of `send-campaign` named after it, its `campaign`
parameter fixed to that file, its schedule (cron + time zone) when the campaign has
one, and at most one run at a time (`concurrency_limit=1`). Plus one deployment of
`preview-customer` whose campaign is a choice of the served campaigns. An invalid
campaign is reported (file:line message) and skipped; the others are served.
Restarting serve picks up added and edited campaign files.

`python -m flows.serve --prefect-yaml [ROOT]` prints the equivalent prefect.yaml for
teams that deploy with `prefect deploy` and a process work pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edition.errors import ContentError, UsageError
from edition.run.campaigns import Served, find_campaigns, relative

PREVIEW = "preview-customer"


def logger() -> Any:
    from prefect.logging import get_logger

    return get_logger("edition.serve")


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
    """A worker imports the installed package (flows.campaign.send_campaign); serve names
    the file (flows/campaign.py:send_campaign) when it runs from the repository, rather
    than a ../../ path."""
    from prefect.deployments.runner import EntrypointType

    try:
        if not work_pool:
            Path(sys.modules[flow.__module__].__file__ or "").resolve().relative_to(
                Path.cwd().resolve())
            return EntrypointType.FILE_PATH
    except ValueError:
        pass
    return EntrypointType.MODULE_PATH


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


def find_served(root: Path, log: Any) -> Served:
    """The campaigns to serve, the invalid ones logged; none at all is an error."""
    served = find_campaigns(root)
    for problem in served.problems:
        log.error("invalid campaign skipped: %s", problem)
    if not served.campaigns:
        raise ContentError(f"no valid campaign to serve in {root / 'campaigns'}",
                           root / "campaigns")
    return served


def run_deployments(deployments: list[Any], *, on_sigterm: Callable[[], None]) -> None:
    """prefect.serve, with a SIGTERM that stops it like Ctrl-C does (and calls
    `on_sigterm`), asking for runs to start every second.

    Prefect's own SIGTERM handler awaits nothing (`Runner.stop` returns an un-awaited
    coroutine inside the loop) and then raises SystemExit through whatever callback
    runs; the shutdown that follows waited on the API without a bound. Here SIGTERM
    cancels the serving task, as Ctrl-C does. A run started from the UI's button
    waited up to Prefect's 10 s poll before anything happened: `_quick_pickup`."""
    import asyncio
    import signal

    from prefect.runner import Runner

    main: dict[str, Any] = {}

    class ServeRunner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            self._logger.info("SIGTERM received: stopping")
            on_sigterm()
            task, loop = main.get("task"), main.get("loop")
            if task is None or loop is None:
                raise KeyboardInterrupt
            loop.call_soon_threadsafe(task.cancel)

    runner = ServeRunner(pause_on_shutdown=True, limit=None)
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
        with _quick_pickup():
            asyncio.run(start())
    except (KeyboardInterrupt, asyncio.CancelledError):
        logger().info("serve stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)


POLL_SECONDS = 1


def _quick_pickup() -> Any:
    """Serve asks the server for runs to start every POLL_SECONDS (one small API request
    a second). PREFECT_RUNNER_POLL_FREQUENCY in the environment wins."""
    from prefect.settings import PREFECT_RUNNER_POLL_FREQUENCY, temporary_settings

    if os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY"):
        return contextlib.nullcontext()
    return temporary_settings(updates={PREFECT_RUNNER_POLL_FREQUENCY: POLL_SECONDS})


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
    """The prefect.yaml text of the deployments serve registers with a work pool."""
    import prefect
    import yaml

    deployments, _ = build_deployments(root, work_pool="edition")
    entries = []
    for deployment in deployments:   # a module path, flows.campaign.send_campaign
        module, function = str(deployment.entrypoint).rsplit(".", 1)
        entries.append({
            "name": deployment.name, "description": deployment.description,
            "entrypoint": f"{module.replace('.', '/')}.py:{function}",
            "parameters": deployment.parameters, "tags": deployment.tags,
            **({"concurrency_limit": deployment.concurrency_limit}
               if deployment.concurrency_limit else {}),
            **({"schedules": [{"cron": s.schedule.cron, "timezone": s.schedule.timezone}
                              for s in deployment.schedules]} if deployment.schedules else {}),
            "work_pool": {"name": "edition", "work_queue_name": "default"}})
    document = {"name": "edition", "prefect-version": prefect.__version__.rsplit(".", 1)[0],
                "build": None, "push": None, "deployments": entries}
    class Dumper(yaml.SafeDumper):   # a description of paragraphs as a block, as written
        pass

    Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))
    return YAML_HEADER + "\n" + yaml.dump(document, Dumper=Dumper, sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["--prefect-yaml"]:
        print("usage: python -m flows.serve --prefect-yaml [ROOT] (serve with: edition "
              "serve)", file=sys.stderr)
        return 2
    root = args[1] if len(args) > 1 else "."
    for problem in find_campaigns(root).problems:
        print(f"skipped: {problem}", file=sys.stderr)
    sys.stdout.write(prefect_yaml(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
