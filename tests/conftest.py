"""Shared fixtures: small content trees, the real CLI in a subprocess, one Prefect harness.

- `content_tree(...)` writes a tiny content root (campaigns/, templates/, articles/,
  offers/, greetings/) from dicts, so each test builds exactly the campaign it talks about.
- `cli(*args, cwd=...)` runs the installed `edition` command in a fresh process and
  returns (returncode, stdout, stderr).
- `prefect_harness` starts Prefect's test server once per session; only the Prefect
  tests ask for it, so the rest of the suite never pays for it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Sending marketing e-mail needs the unsubscribe links' secret; tests that are about a
# missing secret take it away themselves.
os.environ.setdefault("EDITION_UNSUBSCRIBE_SECRET", "tests-only-secret-0123456789abcdef")

REPO = Path(__file__).resolve().parents[1]
CONTENT_DIRS = ("campaigns", "templates", "articles", "offers", "greetings")
AS_OF = "2026-11-02"  # a Monday inside the sample modules' validity windows


# -- content trees ---------------------------------------------------------------------


def module_source(front: Mapping[str, Any], body: str = "A short body.\n") -> str:
    """A module file: YAML front matter between '---' lines, then Markdown."""
    return "---\n" + yaml.safe_dump(dict(front), sort_keys=False, allow_unicode=True) + \
        "---\n" + body


def _text_for(folder: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if folder == "campaigns":
        return yaml.safe_dump(dict(value), sort_keys=False, allow_unicode=True)
    if folder in {"articles", "offers", "greetings"}:
        front = dict(value)
        body = front.pop("body", "A short body.\n")
        return module_source(front, body)
    raise TypeError(f"{folder}: give the file's text")


def write_customers_file(path: Path, rows: Sequence[Mapping[str, Any]],
                         columns: Sequence[str] | None = None) -> Path:
    """CSV (header from `columns` or the union of keys) or JSONL, by the file's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
        return path
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ";".join(v) if isinstance(v, list) else v
                             for k, v in row.items()})
    return path


def write_tree(root: Path, *, campaigns: Mapping[str, Any] | None = None,
               templates: Mapping[str, Any] | None = None,
               articles: Mapping[str, Any] | None = None,
               offers: Mapping[str, Any] | None = None,
               greetings: Mapping[str, Any] | None = None,
               customers: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
               files: Mapping[str, str] | None = None) -> Path:
    """Write a content root; see `content_tree`."""
    groups = {"campaigns": campaigns, "templates": templates, "articles": articles,
              "offers": offers, "greetings": greetings}
    for folder, entries in groups.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for file_name, value in (entries or {}).items():
            target = root / folder / file_name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_text_for(folder, value), encoding="utf-8")
    for file_name, rows in (customers or {}).items():
        write_customers_file(root / "data" / file_name, rows)
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def content_tree(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `content_tree(campaigns={...}, templates={...}, articles={...}, ...)`.

    Each argument maps a file name to its text (written as is, so line numbers are the
    test's) or to a dict: campaigns are dumped as YAML, modules become front matter with
    an optional `body` key. `customers` maps a file name (under data/) to a list of rows;
    `files` maps any other relative path to its text. Returns the content root. Call it
    again with another `name=` for a second root.
    """

    def make(*, name: str = "site", **groups: Any) -> Path:
        return write_tree(tmp_path / name, **groups)

    return make


@pytest.fixture(scope="session")
def shared_content_tree(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`content_tree` for module- or session-scoped fixtures (e.g. under hypothesis)."""

    def make(*, name: str = "site", **groups: Any) -> Path:
        return write_tree(tmp_path_factory.mktemp(name) / name, **groups)

    return make


# -- the real command line ---------------------------------------------------------------


def run_cli(*args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
            env: Mapping[str, str] | None = None, timeout: float = 180,
            input: str | None = None) -> tuple[int, str, str]:
    """Run `edition ARGS...` in a subprocess; (returncode, stdout, stderr)."""
    environment = dict(os.environ)
    environment.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                        "COLUMNS": "200", "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"})
    environment.pop("PREFECT_API_URL", None)
    environment.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "cli", *map(str, args)],
                          cwd=str(cwd) if cwd else None, env=environment, capture_output=True,
                          text=True, encoding="utf-8", timeout=timeout,
                          input=input if input is not None else "",
                          check=False)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def cli() -> Callable[..., tuple[int, str, str]]:
    """`cli("run", campaign, "--out", out, cwd=root)` → (returncode, stdout, stderr)."""
    return run_cli


# -- the sample content and customers ----------------------------------------------------


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's sample content (nothing a test does lands in the repo)."""
    root = tmp_path_factory.mktemp("sample") / "site"
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)
    return root


@pytest.fixture(scope="session")
def sample_customers(sample_root: Path) -> Path:
    """300 generated customers (seed 7), the same file for every test that reads it."""
    from edition.audience.sampledata import write_customers

    path = sample_root / "data" / "customers-300.csv"
    write_customers(path, 300, seed=7)
    return path


@pytest.fixture(scope="session")
def big_customers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100,000 generated customers; only the slow tests ask for it."""
    from edition.audience.sampledata import write_customers

    path = tmp_path_factory.mktemp("big") / "customers-100k.csv"
    write_customers(path, 100_000, seed=5)
    return path


def read_manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text(
        encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def manifest_of() -> Callable[[Path], list[dict[str, Any]]]:
    """Read a run folder's manifest.jsonl as a list of dicts."""
    return read_manifest


# -- Prefect -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Prefect's ephemeral test server, once per session, for the tests that need it."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# -- PostgreSQL ----------------------------------------------------------------------------

from fixtures_postgres import (  # noqa: E402, F401 (fixtures, for every test module)
    fresh_postgresql_url,
    postgres_server,
    postgresql_url,
)
