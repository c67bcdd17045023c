"""The real `edition` command for sending tests: environment, sample site, customers.

Shared by test_send.py and test_crash.py (tests/ is on sys.path under pytest).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_delivery import SinkHandler

REPO = Path(__file__).resolve().parents[1]
CONTENT_DIRS = ("campaigns", "templates", "articles", "offers", "greetings")
CAMPAIGN = "campaigns/weekly-newsletter.yaml"
NAME = "weekly-newsletter"
AS_OF = "2026-11-23"
SEED = 11

# Never inherited by the CLI from the developer's shell: each test sets what it means.
_SCRUBBED = ("EDITION_SMTP_USERNAME", "EDITION_SMTP_PASSWORD", "EDITION_S3_ENDPOINT_URL",
             "EDITION_SES_ENDPOINT_URL", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
             "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
             "PREFECT_API_URL", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}


# --- the real command line -------------------------------------------------------------


def edition_command() -> list[str]:
    """The installed `edition` console script (the module as a fallback)."""
    script = Path(sys.executable).with_name("edition")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def cli_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    environment.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                        "COLUMNS": "200", "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8",
                        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    environment.update(env or {})
    return environment


def edition(*args: Any, cwd: Path, env: Mapping[str, str] | None = None,
            timeout: float = 120) -> tuple[int, str, str]:
    """Run `edition ARGS...` (stdin not a terminal); (returncode, stdout, stderr)."""
    proc = subprocess.run([*edition_command(), *map(str, args)], cwd=cwd, env=cli_env(env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def run_args(customers: Path, out: Path, *extra: Any) -> list[Any]:
    return ["run", CAMPAIGN, "--customers", customers, "--out", out, "--as-of", AS_OF, *extra]


def manifest(out: Path) -> list[dict[str, Any]]:
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def customer_rows(path: Path, limit: int | None = None) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows[:limit] if limit is not None else rows


def set_delivery(root: Path, delivery: Mapping[str, Any]) -> None:
    """Give the site's copy of the campaign this `delivery:` mapping."""
    path = root / CAMPAIGN
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["delivery"] = dict(delivery)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def copy_site(dest: Path) -> Path:
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, dest / folder)
    return dest


def make_customers(n: int, path: Path, seed: int = SEED) -> Path:
    """`edition sample-data --customers N --seed S --out PATH`, through the CLI."""
    code, out, err = edition("sample-data", "--customers", n, "--seed", seed, "--out", path,
                             cwd=path.parent)
    assert code == 0, out + err
    return path


@pytest.fixture(scope="module")
def customers(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """customers(N) → a CSV of N generated customers (made once per N)."""
    folder = tmp_path_factory.mktemp("customers")
    made: dict[int, Path] = {}

    def get(n: int) -> Path:
        if n not in made:
            made[n] = make_customers(n, folder / f"customers-{n}.csv")
        return made[n]

    return get


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """This test's own copy of the sample content: its own ledger under site/out/."""
    return copy_site(tmp_path / "site")


def ledger_file(root: Path) -> Path:
    return root / "out" / NAME / "ledger.sqlite"


def sink_total(sink: SinkHandler) -> int:
    return sum(sink.received.values())
