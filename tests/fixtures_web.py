"""`edition web` (or its alias) as a real server on 127.0.0.1 for a test: started in a
subprocess, polled until /healthz answers (deadline of minutes: a loaded machine), stopped
with SIGTERM (then SIGKILL) however the test ends."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx


@contextlib.contextmanager
def running_web(root: Path, port: int, env: Mapping[str, str], log: Path, *,
                verb: str = "web", command: list[str] | None = None,
                deadline: float = 180) -> Iterator[str]:
    """The server's base URL while the block runs; its output goes to `log`."""
    url = f"http://127.0.0.1:{port}"
    with log.open("w", encoding="utf-8") as handle:
        process = subprocess.Popen(
            [*(command or [sys.executable, "-m", "cli"]), verb, "--host", "127.0.0.1",
             "--port", str(port), "--root", str(root)], cwd=root, env=dict(env),
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        until = time.monotonic() + deadline
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(f"{url}/healthz", timeout=5,
                             trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < until, log.read_text(errors="replace")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=60)


__all__ = ["running_web"]
