"""`edition versions` for people: the audience size, the largest versions by share, `--all`
and `--json` for every version, module ids whole — the real CLI on the sample content and
2,000 generated customers (`edition sample-data --customers 2000 --seed 7`)."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import AS_OF, read_manifest, run_cli

NEWSLETTER = "campaigns/weekly-newsletter.yaml"
VIP = "campaigns/vip-offers-es.yaml"
ROW = re.compile(r"^\s*(?P<share>\d+\.\d)%\s+(?P<customers>[\d,]+)\s+(?P<id>v[0-9a-f]{11})\s+"
                 r"(?P<locale>\S+)\s+(?P<segments>\S.*?)\s{2,}(?P<modules>\S.*)$")


@pytest.fixture(scope="module")
def customers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("versions") / "customers-2000.csv"
    rc, _, stderr = run_cli("sample-data", "--customers", "2000", "--seed", "7", "--out", path)
    assert rc == 0, stderr
    return path


def versions(root: Path, customers: Path, campaign: str, *extra: str,
             env: dict[str, str] | None = None) -> str:
    rc, stdout, stderr = run_cli("versions", campaign, "--customers", customers, "--as-of",
                                 AS_OF, *extra, cwd=root, env=env)
    assert rc == 0, stderr
    assert "Traceback" not in stderr
    return stdout


@pytest.fixture(scope="module")
def listed(sample_root: Path, customers: Path) -> dict[str, Any]:
    return json.loads(versions(sample_root, customers, NEWSLETTER, "--json"))


def rows_of(text: str) -> list[dict[str, Any]]:
    """The version lines of the plain output, parsed back (modules: slot -> ids)."""
    found = []
    for line in text.splitlines():
        match = ROW.match(line)
        if not match:
            continue
        modules = {}
        for part in match["modules"].split("; "):
            slot, _, ids = part.partition(": ")
            modules[slot] = [] if ids == "—" else ids.split(", ")
        found.append({"id": match["id"], "customers": int(match["customers"].replace(",", "")),
                      "share": float(match["share"]), "locale": match["locale"],
                      "segments": [] if match["segments"] == "—"
                      else match["segments"].split(", "), "modules": modules})
    return found


def test_the_default_is_a_summary_of_the_largest_versions(sample_root: Path, customers: Path,
                                                          listed: dict[str, Any]) -> None:
    # a narrow "terminal" width must not matter: the output is not a terminal
    text = versions(sample_root, customers, NEWSLETTER, env={"COLUMNS": "60"})
    every = listed["versions"]
    assert len(every) > 25  # else there is nothing to summarise
    lines = text.splitlines()
    assert lines[0] == (f"weekly-newsletter: 2,000 customers in {len(every):,} versions "
                        f"(as of {AS_OF})")
    assert lines[1] == ("audience: 2,000 of 2,000 customer rows (0 excluded, 0 suppressed, "
                        "0 rejected)")
    shown = rows_of(text)
    assert 1 <= len(shown) <= 25
    assert len(shown) == 20
    assert lines[-1] == f"… and {len(every) - 20:,} more (--all)"
    # the largest first, as --json has them, and each line says the whole version
    assert [r["id"] for r in shown] == [v["id"] for v in every[:20]]
    assert [r["customers"] for r in shown] == sorted((r["customers"] for r in shown),
                                                     reverse=True)
    by_id = {v["id"]: v for v in every}
    for row in shown:
        version = by_id[row["id"]]
        assert row["modules"] == version["modules"], row["id"]
        assert (row["locale"], row["segments"]) == (version["locale"], version["segments"])
        assert row["share"] == pytest.approx(100 * version["customers"] / 2000, abs=0.051)
    top = sum(r["customers"] for r in shown)
    assert f"the 20 largest versions reach {top:,} customers ({100 * top / 2000:.1f} %" in text


def test_module_ids_are_printed_whole(sample_root: Path, customers: Path,
                                      listed: dict[str, Any]) -> None:
    text = versions(sample_root, customers, NEWSLETTER, "--all", env={"COLUMNS": "60"})
    ids = {m for v in listed["versions"] for slot in v["modules"].values() for m in slot}
    longest = max(ids, key=len)
    assert len(longest) > 20  # folded at 60 columns if anything folded
    printed = {m for row in rows_of(text) for slot in row["modules"].values() for m in slot}
    assert printed == ids  # nothing cut, nothing joined
    for module_id in ids:
        assert re.search(rf"(?<![\w-]){re.escape(module_id)}(?![\w-])", text), module_id
    # no line is a continuation of a folded one: each is the header, a fact, or a version
    body = text.split("\n\n", 1)[1].splitlines()
    assert body[0].split() == ["share", "customers", "version", "locale", "segments",
                               "modules"]
    assert all(ROW.match(line) for line in body[1:]), [b for b in body[1:] if not ROW.match(b)]


def test_all_and_json_give_every_version(sample_root: Path, customers: Path,
                                         listed: dict[str, Any]) -> None:
    every = listed["versions"]
    text = versions(sample_root, customers, NEWSLETTER, "--all")
    assert [r["id"] for r in rows_of(text)] == [v["id"] for v in every]
    assert "more (--all)" not in text
    assert {"versions", "rejected", "audience", "excluded", "suppressed", "rows"} <= set(listed)
    assert (listed["rows"], listed["audience"], listed["excluded"], listed["suppressed"],
            listed["rejected"]) == (2000, 2000, 0, 0, 0)
    assert sum(v["customers"] for v in every) == 2000
    assert len({v["id"] for v in every}) == len(every)
    assert sum(v["share"] for v in every) == pytest.approx(100, abs=0.5)


def test_an_audience_limited_campaign_counts_only_its_audience(
        sample_root: Path, customers: Path, tmp_path: Path) -> None:
    """versions agrees with a dry run of the campaign: statuses, versions and their counts."""
    listed = json.loads(versions(sample_root, customers, VIP, "--json"))
    out = tmp_path / "vip"
    rc, _, stderr = run_cli("run", VIP, "--customers", customers, "--out", out, "--as-of",
                            AS_OF, cwd=sample_root)
    assert rc == 0, stderr
    statuses = Counter(m["status"] for m in read_manifest(out))
    assert statuses["excluded"] > 1000 and statuses["rendered"] > 100
    assert (listed["audience"], listed["excluded"], listed["suppressed"],
            listed["rejected"]) == (statuses["rendered"], statuses["excluded"], 0, 0)
    assert listed["reasons"] == {"excluded: not in the audience": statuses["excluded"]}
    ran = json.loads((out / "versions.json").read_text(encoding="utf-8"))["versions"]
    assert {v["id"]: (v["customers"], v["modules"]) for v in listed["versions"]} == {
        v["id"]: (v["customers"], v["modules"]) for v in ran}
    text = versions(sample_root, customers, VIP)
    assert (f"audience: {statuses['rendered']:,} of 2,000 customer rows "
            f"({statuses['excluded']:,} excluded, 0 suppressed, 0 rejected)") in text
    assert f"{statuses['excluded']:,} × excluded: not in the audience" in text
    assert len(rows_of(text)) == len(ran) <= 20


def test_on_a_terminal_a_table_without_folded_ids(sample_root: Path, customers: Path,
                                                  listed: dict[str, Any]) -> None:
    """The same summary as a table on a (pseudo-)terminal; module ids are never split."""
    primary, secondary = pty.openpty()
    env = dict(os.environ) | {"COLUMNS": "100", "LINES": "50", "NO_COLOR": "1",
                              "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                              "PYTHONIOENCODING": "utf-8", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "cli", "versions", NEWSLETTER,
                             "--customers", str(customers), "--as-of", AS_OF],
                            cwd=sample_root, env=env, stdin=subprocess.DEVNULL,
                            stdout=secondary, stderr=subprocess.PIPE)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr.decode()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8"))
    assert "share" in text and "modules" in text and "… and " in text
    top = listed["versions"][:20]
    ids = {m for v in top for slot in v["modules"].values() for m in slot}
    words = set(re.findall(r"[a-z][a-z0-9-]*[a-z0-9]", text))
    assert ids <= words  # every id of the top 20 appears whole
    known = ids | {v["locale"] for v in top} | {s for v in top for s in v["segments"]} | {
        s for v in top for s in v["modules"]}
    broken = {w for w in words - known if any(i.startswith(w) for i in ids)}
    assert not broken, broken  # a folded id leaves its first part as a word of its own
