"""The CLI on a real terminal (a pty), for the questions it asks only there ("[y/N]")."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures_sending import cli_env, edition_command


def run_in_pty(args: list[Any], cwd: Path, answer: bytes | None = None, *,
               meanwhile: Callable[[], None] | None = None,
               env: dict[str, str] | None = None, timeout: float = 90) -> tuple[int, str]:
    """Run the CLI with a terminal as stdin/stdout/stderr; when it asks "[y/N]", call
    `meanwhile` (the question is open: the summary has been shown), then `answer`.
    With an answer, the question must have been asked. (exit code, what it printed)"""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*edition_command(), *map(str, args)], cwd=cwd,
                            env=cli_env({"TERM": "dumb", **(env or {})}), stdin=slave,
                            stdout=slave, stderr=slave, start_new_session=True, close_fds=True)
    os.close(slave)
    output, answered = b"", False
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
                pytest.fail(f"the CLI did not finish in {timeout} s:\n{output.decode()}")
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:   # EIO: every holder of the terminal has closed it
                    chunk = b""
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
            if answer is not None and not answered and b"[y/N]" in output:
                if meanwhile is not None:
                    meanwhile()
                os.write(master, answer)
                answered = True
        code = proc.wait(30)
    finally:
        os.close(master)
    if answer is not None:
        assert answered, output.decode(errors="replace")
    return code, output.decode("utf-8", errors="replace")
