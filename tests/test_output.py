"""The run folder: every file inside it whatever the ids, one manifest row per input row."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

CONTRACT_KEYS = {"customer_id", "version", "segments", "modules", "status", "reason", "files"}
STATUSES = {"rendered", "sent", "unknown", "rejected", "failed"}
CAMPAIGN = {
    "name": "ids", "template": "p.html.j2", "subject": "Hi {{ customer.first_name }}",
    "sender": "Acme <news@acme.example>", "customers": "data/customers.csv",
    "segments": {"big": "spend >= 100"},
    "slots": {"articles": {"kind": "article", "count": 1}},
    "formats": ["html", "text", "eml"],
}
TEMPLATES = {"p.html.j2": "<html><body><p>Hi {{ customer.first_name }}</p>"
                          "{% for a in articles %}{{ a.html }}{% endfor %}</body></html>\n"}
ARTICLES = {"all.md": {"title": "All"}, "big.md": {"title": "Big", "segments": ["big"],
                                                   "priority": 3}}
ODD_IDS = ["../../x", "a/b", "a_b", "/etc/passwd", "CON", "con.txt", "a b", "Zoë-東京",
           "ü" * 3, "x" * 300, "A", "a", "..", ".", "-", "nul", "a\\b", "~root", "%2e%2e"]


def customers(ids: list[str]) -> list[dict[str, object]]:
    return [{"id": cid, "email": f"u{i}@example.com", "first_name": f"N{i}",
             "spend": 50 if i % 2 else 150} for i, cid in enumerate(ids)]


@pytest.fixture
def odd_run(content_tree, cli, manifest_of):
    rows = customers(ODD_IDS)
    rows.insert(3, {"id": "", "email": "noid@example.com", "first_name": "None"})
    rows.insert(6, {"id": "a/b", "email": "dup@example.com", "first_name": "Dup"})
    rows.append({"id": "nomail", "email": "", "first_name": "NoMail"})
    rows.append({"id": "noname", "email": "nn@example.com", "first_name": ""})
    root = content_tree(campaigns={"ids.yaml": CAMPAIGN}, templates=TEMPLATES,
                        articles=ARTICLES, customers={"customers.csv": rows})
    out = root / "runs" / "one"
    rc, stdout, stderr = cli("run", "campaigns/ids.yaml", "--out", str(out), cwd=root)
    # exit 3: the run finished, but a customer failed (the campaign allows none)
    assert rc == 3, stderr
    return root, out, rows, manifest_of(out), stdout


def test_every_file_lands_inside_the_out_folder_and_no_two_share_a_path(odd_run) -> None:
    root, out, _, manifest, _ = odd_run
    real_out = out.resolve()
    paths = []
    for row in manifest:
        for rel in row["files"].values():
            target = (out / rel).resolve()
            assert target.is_relative_to(real_out), rel
            assert target.is_file()
            paths.append(str(target))
    assert len(paths) == len(set(paths))
    assert len({p.lower() for p in paths}) == len(paths)          # case-insensitive disks
    on_disk = {str(Path(dirpath, f).resolve()) for dirpath, _, files in os.walk(out)
               for f in files}
    assert set(paths) <= on_disk
    assert on_disk - set(paths) == {str(real_out / n) for n in
                                    ("manifest.jsonl", "versions.json", "report.md",
                                     "run.json", ".edition.lock")}
    # nothing escaped next to the out folder or the content root
    assert not (root / "x").exists() and not (root.parent / "x").exists()
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["one"]
    assert all(len(Path(p).name.encode()) <= 255 for p in paths)


def test_manifest_has_one_row_per_input_row_in_order(odd_run) -> None:
    _, _, rows, manifest, stdout = odd_run
    assert len(manifest) == len(rows)
    assert [m["customer_id"] or "" for m in manifest] == [str(r["id"]) for r in rows]
    for entry in manifest:
        assert set(entry) >= CONTRACT_KEYS
        assert entry["status"] in STATUSES
        assert isinstance(entry["segments"], list) and isinstance(entry["modules"], dict)
        assert (entry["reason"] is None) == (entry["status"] == "rendered")
        if entry["status"] == "rendered":
            assert set(entry["files"]) == {"html", "text", "eml"}
            assert entry["version"]
        else:
            assert entry["files"] == {}
    by_position = manifest
    assert by_position[3]["status"] == "rejected" and "id" in by_position[3]["reason"]
    assert by_position[6]["status"] == "rejected" and "repeated id" in by_position[6]["reason"]
    assert by_position[-2]["status"] == "rejected" and "email" in by_position[-2]["reason"]
    assert by_position[-1]["status"] == "failed"
    assert "first_name" in by_position[-1]["reason"]
    counts = Counter(m["status"] for m in manifest)
    assert f"{len(rows)} customers" in stdout
    for status_name, n in counts.items():
        assert f"{n} {status_name}" in stdout


def test_versions_json_counts_add_up(odd_run) -> None:
    _, out, _, manifest, _ = odd_run
    doc = json.loads((out / "versions.json").read_text(encoding="utf-8"))
    versions = {v["id"]: v for v in doc["versions"]}
    counted = Counter(m["version"] for m in manifest if m["status"] != "rejected")
    assert {vid: v["customers"] for vid, v in versions.items()} == dict(counted)
    for entry in manifest:
        if entry["status"] != "rejected":
            assert versions[entry["version"]]["modules"] == entry["modules"]
    assert sum(v["customers"] for v in doc["versions"]) == sum(
        1 for m in manifest if m["status"] != "rejected")
    assert {tuple(v["modules"]["articles"]) for v in doc["versions"]} == {("big",), ("all",)}


def test_report_lists_statuses_and_reasons(odd_run) -> None:
    _, out, _, manifest, _ = odd_run
    report = (out / "report.md").read_text(encoding="utf-8")
    counts = Counter(m["status"] for m in manifest)
    for status_name, n in counts.items():
        assert f"| {status_name} | {n} |" in report
    assert "repeated id" in report and "missing id" in report
    assert "customer has no field 'first_name'" in report
    assert "`big`" in report


def test_header_only_customer_file_is_a_clean_empty_run(content_tree, cli, manifest_of) -> None:
    root = content_tree(campaigns={"ids.yaml": CAMPAIGN}, templates=TEMPLATES,
                        articles=ARTICLES,
                        files={"data/customers.csv": "id,email,first_name,spend\n"})
    out = root / "out"
    rc, stdout, stderr = cli("run", "campaigns/ids.yaml", "--out", str(out), cwd=root)
    assert rc == 0, stderr
    assert "Traceback" not in stderr
    assert "0 customers" in stdout
    assert manifest_of(out) == []
    assert json.loads((out / "versions.json").read_text(encoding="utf-8"))["versions"] == []
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "0 customer rows" in report
    assert sorted(p.name for p in out.iterdir()) == [".edition.lock", "manifest.jsonl",
                                                     "report.md", "run.json", "versions.json"]


def test_completely_empty_customer_file_is_also_fine(content_tree, cli, manifest_of) -> None:
    root = content_tree(campaigns={"ids.yaml": CAMPAIGN}, templates=TEMPLATES,
                        articles=ARTICLES, files={"data/customers.csv": ""})
    rc, _, stderr = cli("run", "campaigns/ids.yaml", "--out", "out", cwd=root)
    assert rc == 0, stderr
    assert manifest_of(root / "out") == []


def test_missing_customer_file_is_a_run_failure(content_tree, cli) -> None:
    root = content_tree(campaigns={"ids.yaml": CAMPAIGN}, templates=TEMPLATES,
                        articles=ARTICLES)
    rc, _, stderr = cli("run", "campaigns/ids.yaml", "--out", "out", cwd=root)
    assert rc == 1
    assert "customer file not found" in stderr and "Traceback" not in stderr


def test_safe_names_are_distinct_and_plain(tmp_path: Path) -> None:
    from edition.naming import relative_path, safe_name
    from edition.run.folder import FileWriter as RunFolder

    names = [safe_name(cid) for cid in ODD_IDS]
    assert len(set(names)) == len(names)
    assert len({n.lower() for n in names}) == len(names)
    for name in names:
        assert "/" not in name and "\\" not in name and name not in {".", ".."}
        assert not name.startswith(".") and len(name) < 100
    assert safe_name("C000123") == "C000123"          # plain ids stay readable
    assert safe_name("a") != safe_name("A") == "A"
    assert safe_name("CON") != "CON" and safe_name("Nul.txt") != "Nul.txt"
    folder = RunFolder(tmp_path / "run")
    for cid in ODD_IDS:
        folder.write(relative_path("html", cid), cid.encode())
    assert len(list((tmp_path / "run" / "html").iterdir())) == len(ODD_IDS)
