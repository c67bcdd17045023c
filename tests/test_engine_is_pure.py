"""The engine is pure Python: importing it (or running the CLI) never imports Prefect."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import edition
import renderers

REPO = Path(__file__).resolve().parents[1]
# `edition serve` and `--via-prefect` load flows/ lazily; those are the only way in
ENGINE = sorted(
    [f"edition.{m.name}" for m in pkgutil.iter_modules(edition.__path__)]
    + [f"edition.commands.{m.name}" for m in pkgutil.iter_modules(
        [str(Path(edition.__path__[0]) / "commands")])]
    + [f"renderers.{m.name}" for m in pkgutil.iter_modules(renderers.__path__)]
)


def fresh_python(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_the_engine_does_not_import_prefect() -> None:
    assert {"edition.run", "edition.selection", "edition.editions", "edition.personal",
            "edition.customers", "edition.campaign", "renderers.eml"} <= set(ENGINE)
    code = (
        "import importlib, json, sys\n"
        f"for name in {ENGINE!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect')))\n"
    )
    assert fresh_python(code) == []


def test_a_cli_run_does_not_import_prefect(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from edition.cli import app\n"
        "runner = CliRunner()\n"
        f"data = {str(tmp_path / 'c.csv')!r}\n"
        "r1 = runner.invoke(app, ['sample-data', '--customers', '40', '--out', data])\n"
        "r2 = runner.invoke(app, ['run', 'campaigns/weekly-newsletter.yaml', '--customers', data,"
        f" '--out', {str(tmp_path / 'out')!r}, '--as-of', '2026-11-02'])\n"
        "r3 = runner.invoke(app, ['preview', 'campaigns/weekly-newsletter.yaml', '--customer',"
        " 'C000001', '--customers', data, '--as-of', '2026-11-02'])\n"
        "print(json.dumps({'codes': [r1.exit_code, r2.exit_code, r3.exit_code],"
        " 'prefect': 'prefect' in sys.modules}))\n"
    )
    result = fresh_python(code)
    assert result == {"codes": [0, 0, 0], "prefect": False}
    assert (tmp_path / "out" / "manifest.jsonl").is_file()
