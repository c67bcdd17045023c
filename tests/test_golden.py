"""Golden files: what the sample campaigns render for a few fixed customers, byte for byte.

A refactoring that changes one byte of an edition fails here, naming the file. When a
change of output is intended, regenerate the files with one command and review the diff:

    make golden        # = .venv/bin/python tests/test_golden.py --regenerate

The customers are `tests/golden/customers.csv` (fixed rows: English and Spanish, each
segment, an empty first name). The .eml files have their two volatile headers masked
(Date: the run's clock; Message-ID: made from it); every other byte is compared.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GOLDEN = HERE / "golden"
CUSTOMERS = GOLDEN / "customers.csv"
CONTENT_DIRS = ("campaigns", "templates", "articles", "offers", "greetings")
AS_OF = "2026-11-02"
SECRET = "golden-files-secret-0123456789abcdef"   # the links' tokens depend on it
CAMPAIGNS = ("weekly-newsletter", "invoice", "vip-offers-es")
FORMATS = {"html": ".html", "text": ".txt", "eml": ".eml"}
VOLATILE = re.compile(rb"^(Date|Message-ID): .*$", re.M)
MANIFEST_KEYS = ("customer_id", "version", "segments", "modules", "status", "reason_code")


def masked(name: str, data: bytes) -> bytes:
    return VOLATILE.sub(rb"\1: <masked>", data) if name.endswith(".eml") else data


def render(campaign: str, workdir: Path) -> dict[str, bytes]:
    """Run `edition run` on a copy of the sample content; {relative path: bytes}."""
    root = workdir / "site"
    if not root.exists():
        for folder in CONTENT_DIRS:
            shutil.copytree(REPO / folder, root / folder)
    out = workdir / "out" / campaign
    env = dict(os.environ, EDITION_UNSUBSCRIBE_SECRET=SECRET, NO_COLOR="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "run", f"campaigns/{campaign}.yaml",
         "--customers", str(CUSTOMERS), "--as-of", AS_OF, "--out", str(out),
         "--formats", ",".join(FORMATS)],
        cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files: dict[str, bytes] = {}
    for folder, suffix in FORMATS.items():
        for path in sorted((out / folder).glob(f"*{suffix}")):
            files[f"{folder}/{path.name}"] = masked(path.name, path.read_bytes())
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text(
        encoding="utf-8").splitlines()]
    files["manifest.jsonl"] = "".join(
        json.dumps({k: row.get(k) for k in MANIFEST_KEYS}, ensure_ascii=False) + "\n"
        for row in rows).encode("utf-8")
    return files


def golden_files(campaign: str) -> dict[str, bytes]:
    folder = GOLDEN / campaign
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("campaign", CAMPAIGNS)
def test_editions_equal_their_golden_files(campaign: str, tmp_path: Path) -> None:
    made = render(campaign, tmp_path)
    golden = golden_files(campaign)
    assert golden, f"no golden files for {campaign}: run `make golden`"
    assert sorted(made) == sorted(golden), "the files made differ from the golden ones"
    changed = [name for name in golden if made[name] != golden[name]]
    assert not changed, (f"{campaign}: {len(changed)} file(s) differ from tests/golden/"
                         f"{campaign}/ ({', '.join(changed[:5])}); if intended, run "
                         f"`make golden` and review the diff")


def regenerate() -> None:
    with tempfile.TemporaryDirectory(prefix="edition-golden-") as tmp:
        for campaign in CAMPAIGNS:
            folder = GOLDEN / campaign
            if folder.exists():
                shutil.rmtree(folder)
            for name, data in render(campaign, Path(tmp)).items():
                target = folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            print(f"tests/golden/{campaign}/: {len(list(folder.rglob('*.*')))} files")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        raise SystemExit("usage: python tests/test_golden.py --regenerate")
    regenerate()
