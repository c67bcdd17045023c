"""A newcomer's first commands, as the README and docs/prefect-ui.md give them.

- After `make demo`, `edition` and `prefect` live in .venv/bin, not on PATH: the README
  says so in its first lines (which stay `make demo` / `make test`).
- Every documented `prefect server start` runs with Prefect's telemetry off (without
  it, a server that cannot reach Prefect's telemetry service logs an error at start):
  the documented lines are run in bash and Prefect's settings read back there.
- `edition` turns telemetry off for itself before it loads Prefect.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "README.md", REPO / "docs" / "prefect-ui.md")


def test_the_readme_says_how_to_reach_the_commands_first() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    commands = [line.strip() for line in lines if line.startswith("    ")]
    assert commands[0].startswith("make demo") and commands[1].startswith("make test")
    top = "\n".join(lines[:16])
    assert ". .venv/bin/activate" in top and ".venv/bin/edition" in top
    assert "PATH" in top


def console_blocks(path: Path) -> list[list[str]]:
    text = path.read_text(encoding="utf-8")
    return [[line[2:] for line in block.splitlines() if line.startswith("$ ")]
            for block in re.findall(r"```console\n(.*?)```", text, re.S)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_documented_server_commands_turn_telemetry_off(doc: Path) -> None:
    blocks = [b for b in console_blocks(doc) if any("prefect server start" in c for c in b)]
    assert blocks, f"{doc.name} documents no prefect server start"
    env = {k: v for k, v in os.environ.items()
           if k not in {"PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK"}}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for block in blocks:
        before = block[:next(i for i, c in enumerate(block) if "prefect server start" in c)]
        assert before, block
        # the lines before the server's own, then what that server would read
        script = "\n".join([*before, 'exec python -c "from prefect.settings import '
                            'get_current_settings as s; print(s().server.analytics_enabled, '
                            '__import__(\'os\').environ.get(\'DO_NOT_TRACK\'))"'])
        done = subprocess.run(["bash", "-ec", script], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["False", "1"], (block, done.stdout)


def test_the_cli_turns_telemetry_off_before_it_loads_prefect() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in {"PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK"}}
    code = ("import sys, cli; assert 'prefect' not in sys.modules; "
            "from prefect.settings import get_current_settings as s; import os; "
            "print(s().server.analytics_enabled, os.environ['DO_NOT_TRACK'])")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "1"]
    # the user's own choice wins
    done = subprocess.run([sys.executable, "-c", code], env=env | {"DO_NOT_TRACK": "0"},
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.split() == ["False", "0"], done.stderr


def test_the_ui_docs_say_an_smtp_send_from_the_form_needs_allow() -> None:
    text = " ".join((REPO / "docs" / "prefect-ui.md").read_text(encoding="utf-8").split())
    sending = text.split("To send for real", 1)[1].split("## Approving a send", 1)[0]
    assert "edition serve --allow smtp://" in sending
    assert "restart serve as: edition serve --allow smtp://" in sending
