"""The command line's start: a verb's module is imported when that verb is used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import run_cli

REPO = Path(__file__).resolve().parent.parent
VERB_MODULES = {"run", "preview", "validate", "versions", "sample_data", "serve", "web",
                "approve", "send", "diff", "replay", "events", "experiment", "preferences"}


def loaded_verbs(*args: str) -> list[str]:
    """The cli verb modules a fresh process has imported after `edition ARGS`."""
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from cli import app\n"
        f"result = CliRunner().invoke(app, {list(args)!r})\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(json.dumps(sorted(m.split('.')[1] for m in sys.modules\n"
        f"                        if m.startswith('cli.') and m.split('.')[1] in"
        f" {sorted(VERB_MODULES)!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_verb_imports_its_own_module_only() -> None:
    assert loaded_verbs("run", "--help") == ["run"]
    assert loaded_verbs("sample-data", "--help") == ["sample_data"]
    assert loaded_verbs("events", "ingest", "--help") == ["events"]


def test_help_lists_every_verb_with_its_help() -> None:
    rc, stdout, stderr = run_cli("--help")
    assert rc == 0, stderr
    for verb, words in {"run": "Render (and with --send, deliver)",
                        "sample-data": "Write N generated customers",
                        "unsubscribe-server": "older name of `edition web`",
                        "preferences": "consent records", "approve": "record its approval",
                        "experiment": "Experiments: reports and verdicts"}.items():
        assert any(line.strip(" │").startswith(verb) and words in line
                   for line in stdout.splitlines()), (verb, stdout)
    assert loaded_verbs("--help") == sorted(VERB_MODULES)


def test_an_unknown_verb_is_a_usage_error() -> None:
    rc, _, stderr = run_cli("rnu", "campaigns/weekly-newsletter.yaml", cwd=REPO)
    assert rc == 2
    assert "No such command 'rnu'" in stderr and "Traceback" not in stderr
