"""`edition serve`: every campaign becomes a Prefect deployment, run by this process.

The deployments and Prefect's runner are flows/serve.py's; this verb owns the
long-running process around them: the content root's serve lock
(edition/run/serve_lock.py: two serves would take each other's runs for dead ones), the
repair of runs left behind at start and at stop (flows/recovery.py: `recover_served`),
the output folder published read-only over HTTP on loopback (web/outputs.py) so the
artifacts' links open next to the Prefect UI, what the flow runs find in their
environment, and a stop in bounded time (`Stopper`). Prefect is loaded only when the verb runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.console import user_errors
from edition.errors import UsageError

OUTPUT_PORT_ENV = "EDITION_OUTPUT_PORT"
# How long serve may take to stop once told to (SIGTERM, Ctrl-C): pausing the schedules,
# stopping the flow-run processes and marking their runs are API calls, and a Prefect
# server that stopped answering kept serve waiting for minutes (each call retried, 60 s
# apiece). Past this, serve kills what it started and exits; the next start repairs the
# run folders and marks the runs Crashed (flows/recovery.py).
STOP_SECONDS = 5.0


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    root: Annotated[str, typer.Option(help="Content root (the folder with campaigns/)")] = ".",
    allow: Annotated[list[str] | None, typer.Option(
        "--allow", help="Another folder (or s3://, postgresql://, smtp://, tcp:// prefix) "
                        "runs may read customers from, write output to, deliver to or "
                        "hand batches to")] = None,
    work_pool: Annotated[str | None, typer.Option(
        "--work-pool", help="Register the deployments with this work pool (its workers "
                            "run them) and return, instead of running them here")] = None,
) -> None:
    """Serve every campaign in campaigns/ as a deployment of send-campaign.

    A run started from the UI may read customers and write output only under the content
    root (output under its out/) and the --allow roots. Against a server with basic auth,
    set PREFECT_API_AUTH_STRING (user:password) like for any Prefect client.
    """
    with user_errors():
        serve_campaigns(Path(root).resolve(), tuple(allow or ()), work_pool)


def serve_campaigns(root: Path, allow: tuple[str, ...], work_pool: str | None) -> None:
    """Register every valid campaign (and the preview) with Prefect and run them; with
    `work_pool`, register them with the pool (its workers run them) and return."""
    from prefect.settings import PREFECT_API_URL

    from edition.run.roots import Roots
    from edition.run.run_page import OUTPUT_ROOT_ENV, OUTPUT_URL_ENV
    from edition.run.serve_lock import ServeLock
    from flows import serve as flows_serve
    from flows.recovery import recover_served
    from web.outputs import start_output_server

    log = flows_serve.logger()
    environment = Roots.of(root, allow).environment()
    served = flows_serve.find_served(root, log)
    api_url = PREFECT_API_URL.value()
    check_api_access(api_url, log)
    if work_pool:
        flows_serve.deploy_to_pool(root, served, work_pool, environment, log)
        return
    deployments, _ = flows_serve.build_deployments(root)
    lock = ServeLock(root / "out")
    lock.acquire(api_url)
    recover_served(root, served, log)
    port = os.environ.get(OUTPUT_PORT_ENV)
    server, url = start_output_server(root / "out", int(port) if port else None)
    os.environ.update(environment | {OUTPUT_URL_ENV: url,     # inherited by the flow runs
                                     OUTPUT_ROOT_ENV: str(root / "out")})
    log.info("serving %d campaign(s) from %s: %s (+ %s); output folder at %s",
             len(served.campaigns), root, ", ".join(c.name for _, c in served.campaigns),
             flows_serve.PREVIEW, url)
    stopper = Stopper(lock.release, log)
    try:
        flows_serve.run_deployments(deployments, on_sigterm=stopper.arm)
    finally:
        stopper.arm()   # whatever stopped serve, it is gone within STOP_SECONDS
        server.shutdown()
        # Prefect's runner kills the flow-run processes it started when it stops; put
        # their folders and states right now rather than at the next start.
        wait_for_children(2.0)
        recover_served(root, served, log)
        lock.release()


class Stopper:
    """Ends this process at most STOP_SECONDS after `arm()`: kills every process serve
    started (flow runs and their workers, an ephemeral Prefect server), runs `release`
    (the serve lock) and exits. Armed by SIGTERM and by serve's own shutdown."""

    def __init__(self, release: Callable[[], None], log: Any, seconds: float = STOP_SECONDS):
        self.release, self.log, self.seconds = release, log, seconds
        self._armed = threading.Event()

    def arm(self) -> None:
        if not self._armed.is_set():
            self._armed.set()
            timer = threading.Timer(self.seconds, self.force)
            timer.daemon = True   # a serve that stops in time exits without it
            timer.start()

    def force(self) -> None:
        try:
            self.log.warning("serve did not stop within %.0f s: stopping its processes and "
                             "exiting; the next start repairs interrupted runs", self.seconds)
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


def wait_for_children(timeout: float) -> None:
    """Wait (at most `timeout`) for this process's multiprocessing children to end."""
    import multiprocessing
    import time

    deadline = time.monotonic() + timeout
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.2)


def check_api_access(api_url: str | None, log: Any) -> None:
    """Say clearly when the server wants a password this process lacks, and warn when a
    server others can reach asks for none (anyone reaching it could start a send)."""
    import base64
    from urllib.parse import urlsplit

    import httpx
    from prefect.settings import PREFECT_API_AUTH_STRING

    from edition.databases import masked

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
    if open_door and urlsplit(api_url).hostname not in {"127.0.0.1", "localhost", "::1"}:
        log.warning("the Prefect server at %s asks for no password: anyone who reaches it "
                    "can start a send. Start the server with "
                    "PREFECT_SERVER_API_AUTH_STRING=user:password and set "
                    "PREFECT_API_AUTH_STRING to the same here (docs/prefect-ui.md)", shown)

