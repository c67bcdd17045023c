"""`edition serve` stops on SIGTERM within seconds and leaves no process behind.

The real `edition serve` in a subprocess, against the session's Prefect test server
through a loopback TCP relay the test can freeze: a Prefect server that stops answering
(restarting, overloaded, its machine gone) kept serve waiting for minutes after SIGTERM,
each API call of its shutdown retried with a 60 s timeout. A run is in progress when
SIGTERM arrives, so serve has flow-run processes (and their workers) to stop too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
CONTENT = ("campaigns", "templates", "articles", "offers", "greetings")
STOP_BOUND = 20.0   # seconds from SIGTERM to exit; serve gives itself 5, the rest is slack
pytestmark = [pytest.mark.soak, pytest.mark.timeout(600)]


class Relay:
    """A loopback TCP relay to `upstream`; `freeze()` makes it stop answering (it keeps
    every connection open and forwards nothing), like a server that hangs."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.frozen.is_set():
                continue   # accepted, never answered
            try:
                server = socket.create_connection(self.upstream, timeout=30)
            except OSError:
                client.close()
                continue
            self.sockets.append(server)
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        source.settimeout(0.5)
        while not self.closed.is_set():
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                return
            while self.frozen.is_set() and not self.closed.is_set():
                time.sleep(0.1)   # hold what came in: the caller waits, as on a hung server
            with contextlib.suppress(OSError):
                target.sendall(data)

    def freeze(self) -> None:
        self.frozen.set()

    def close(self) -> None:
        self.closed.set()
        for sock in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def relay(prefect_harness: None) -> Iterator[Relay]:
    from urllib.parse import urlsplit

    from prefect.settings import PREFECT_API_URL

    api = urlsplit(PREFECT_API_URL.value())
    relay = Relay((api.hostname or "127.0.0.1", api.port or 80))
    try:
        yield relay
    finally:
        relay.close()


def start_serve(root: Path, api: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1", "PREFECT_HOME": str(root.parent / "prefect-home"),
            "PREFECT_RUNNER_POLL_FREQUENCY": "1", "EDITION_OUTPUT_PORT": "0",
            "NO_COLOR": "1", "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cli", "serve", "--root", str(root)],
                                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def wait_for(what: str, check, timeout: float, log: Path) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n"
                        f"{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)


def family(process: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [process, *process.children(recursive=True)]
    return []


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_serve_stops_within_seconds_on_sigterm_with_a_run_in_progress(
        relay: Relay, tmp_path: Path) -> None:
    root = tmp_path / "site"
    for folder in CONTENT:
        (root / folder).mkdir(parents=True)
        for file in (REPO / folder).iterdir():
            if file.is_file():
                (root / folder / file.name).write_bytes(file.read_bytes())
    from edition.audience.sampledata import write_customers

    write_customers(root / "data" / "customers.csv", 6000, seed=3)
    api = f"http://127.0.0.1:{relay.port}/api"
    log = tmp_path / "serve.log"
    serve = start_serve(root, api, log)
    try:
        client = httpx.Client(base_url=api, timeout=30)

        def deployment() -> dict | None:
            found = client.get("/deployments/name/send-campaign/weekly-newsletter")
            return found.json() if found.status_code == 200 else None

        target = wait_for("serve's deployments", deployment, 240, log)
        run = client.post(f"/deployments/{target['id']}/create_flow_run",
                          json={"parameters": {"advanced": {"batch_size": 200}}}).json()
        wait_for("the flow run to be running", lambda: (client.get(
            f"/flow_runs/{run['id']}").json()["state"] or {}).get("type") == "RUNNING",
            240, log)
        wait_for("a batch to be rendered", lambda: "render-batch" in log.read_text(
            errors="replace"), 120, log)
        processes = family(psutil.Process(serve.pid))
        assert len(processes) >= 2, "serve has its flow-run process"
        relay.freeze()   # the Prefect server stops answering, then SIGTERM
        started = time.monotonic()
        os.kill(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=STOP_BOUND * 3)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve still running {STOP_BOUND * 3:.0f} s after SIGTERM\n"
                        f"{log.read_text(errors='replace')[-4000:]}")
        took = time.monotonic() - started
        assert took < STOP_BOUND, (f"serve took {took:.1f} s to stop\n"
                                   f"{log.read_text(errors='replace')[-4000:]}")
        # nothing it started outlives it: flow-run processes, their pools, a server
        deadline = time.monotonic() + 10
        while any(map(alive, processes)) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p.pid for p in processes if alive(p)]
        assert left == [], left
    finally:
        relay.close()
        if serve.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=30)
