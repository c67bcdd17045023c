"""The UI path for bench/run.py: a real `prefect server start` and `edition serve`.

`Stack` starts both on loopback (free ports, a PREFECT_HOME of its own) in a copy of the
sample content (a site folder, the way a team serves its content root), waits until the
campaign is a deployment, and `request()` starts a flow run through the API with
`prefect.deployments.run_deployment` and times it until it is final. The client runs in
its own process (`python bench/served.py request API NAME PARAMETERS`) with its imports
done before the clock starts, so the wall time is what a caller of the API waits: the
request, serve's pick-up of the scheduled run, the flow-run process and the run itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONTENT = ("templates", "articles", "offers", "greetings")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(proc: subprocess.Popen | None, grace: float = 20.0) -> None:
    """Terminate a process group this module started; kill it if it does not go."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class StackError(RuntimeError):
    """The server or serve did not come up; the message carries its log's tail."""


class Stack:
    """prefect server + edition serve, for as long as the `with` block lasts."""

    def __init__(self, repo: Path, work: Path, env: dict[str, str], campaign: str):
        self.repo, self.work, self.campaign = repo, work, campaign
        self.site = work / "site"
        self.home = work / "prefect-home"
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {k: v for k, v in env.items() if not k.startswith("PREFECT_")}
        self.env.update({
            "PREFECT_HOME": str(self.home), "PREFECT_API_URL": self.api,
            "PREFECT_UI_API_URL": self.api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1", "PREFECT_LOGGING_COLOR": "false",
            "EDITION_OUTPUT_PORT": str(free_port()),
        })
        for key in ("PREFECT_RUNNER_POLL_FREQUENCY",):  # a chosen poll, else Prefect's
            if key in env:
                self.env[key] = env[key]
        self.server: subprocess.Popen | None = None
        self.serve: subprocess.Popen | None = None
        self.server_start = self.serve_start = 0.0

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> Stack:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.site / "campaigns").mkdir(parents=True, exist_ok=True)
        for folder in CONTENT:
            shutil.copytree(self.repo / folder, self.site / folder, dirs_exist_ok=True)
        shutil.copy(self.repo / "campaigns" / f"{self.campaign}.yaml", self.site / "campaigns")
        (self.site / "data").mkdir(exist_ok=True)
        try:
            start = time.perf_counter()
            self.server = self._start("server", [sys.executable, "-m", "prefect", "server",
                                                 "start", "--host", "127.0.0.1", "--port",
                                                 str(self.port)], self.home)
            self._wait("the Prefect server", self._healthy, 300, self.home / "server.log")
            self.server_start = time.perf_counter() - start
            start = time.perf_counter()
            self.serve = self._start("serve", [sys.executable, "-m", "cli", "serve", "--root",
                                               str(self.site)], self.site)
            self._wait("the deployment", lambda: self.campaign in self._deployments(), 300,
                       self.home / "serve.log")
            self.serve_start = time.perf_counter() - start
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.serve)
        stop(self.server)

    def _start(self, name: str, cmd: list[str], cwd: Path) -> subprocess.Popen:
        with (self.home / f"{name}.log").open("wb") as log:
            return subprocess.Popen(cmd, cwd=cwd, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)

    def _wait(self, what: str, check: Any, timeout: float, log: Path) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            dead = [p for p in (self.server, self.serve) if p is not None and p.poll() is not None]
            if dead or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                raise StackError(f"{what} did not come up ({'exited' if dead else 'timeout'})"
                                 f"\n{tail}")
            time.sleep(0.3)

    def _get(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        return httpx.request(method, self.api + path, json=body, timeout=15)

    def _healthy(self) -> bool:
        try:
            return self._get("GET", "/health").status_code == 200
        except Exception:
            return False

    def _deployments(self) -> set[str]:
        try:
            return {d["name"] for d in self._get("POST", "/deployments/filter", {}).json()}
        except Exception:
            return set()

    # -- a run through the API ------------------------------------------------------

    def request(self, parameters: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        """Start send-campaign/<campaign> with `parameters`; timings (see `client`)."""
        done = subprocess.run(
            [sys.executable, __file__, "request", self.api, f"send-campaign/{self.campaign}",
             json.dumps(parameters), str(timeout)], cwd=self.site, env=self.env,
            capture_output=True, text=True, timeout=timeout + 120, check=False)
        if done.returncode:
            raise StackError(f"the API request failed (exit {done.returncode}):\n"
                             f"{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def client(api: str, name: str, parameters: dict[str, Any], timeout: float) -> dict[str, Any]:
    """In its own process: run_deployment, then poll the flow run until it is final."""
    os.environ["PREFECT_API_URL"] = api
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    with get_client(sync_client=True) as api_client:
        api_client.read_deployment_by_name(name)  # connected, before the clock
        start = time.perf_counter()
        run = run_deployment(name, parameters=parameters, timeout=0)
        deadline = start + timeout
        while True:
            run = api_client.read_flow_run(run.id)
            if run.state and run.state.type.value in FINAL:
                break
            if time.perf_counter() > deadline:
                raise SystemExit(f"flow run {run.id} not final after {timeout:.0f} s")
            time.sleep(0.1)
        wall = time.perf_counter() - start

    def seconds(a: dt.datetime | None, b: dt.datetime | None) -> float | None:
        return (b - a).total_seconds() if a and b else None

    return {"wall": wall, "state": run.state.type.value, "id": str(run.id),
            "to_running": seconds(run.created, run.start_time),
            "running": seconds(run.start_time, run.end_time)}


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "request":
        print(json.dumps(client(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]),
                                float(sys.argv[5]))))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} request API DEPLOYMENT PARAMETERS TIMEOUT")
