"""`edition diff`: two real runs of a tiny campaign, one module edited and one added.

Three groups of customers: `vip` gets a new module (different modules), the others get
the edited module (same modules, content edited), `basic` gets neither (same version;
one of them has a new first name: personal layer only). One customer is new in run B.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import AS_OF, module_source, read_manifest, run_cli, write_customers_file

PAGE = ("<html lang=en><body><h1>Hello {{ customer.first_name }}</h1>"
        "{% for a in articles %}<h2>{{ a.title }}</h2>{{ a.html }}{% endfor %}</body></html>\n")
CAMPAIGN = {"name": "tiny", "template": "page.html.j2", "formats": ["html", "text"],
            "segments": {"vip": "tier == 'vip'", "basic": "tier == 'basic'"},
            "slots": {"articles": {"kind": "article", "count": 2}},
            "customers": "data/a.csv"}
ARTICLES = {
    "a.md": {"title": "For everyone", "priority": 5, "body": "Everyone reads this.\n"},
    "b.md": {"title": "Second piece", "priority": 1, "body": "The old second piece.\n"},
    "c.md": {"title": "For VIPs", "segments": ["vip"], "priority": 3, "body": "VIP news.\n"},
    "e.md": {"title": "Basics", "segments": ["basic"], "priority": 9, "body": "Basics.\n"},
}


def people(extra: bool = False, renamed: bool = False) -> list[dict[str, str]]:
    rows = []
    for i, tier in enumerate(["vip"] * 3 + ["normal"] * 3 + ["basic"] * 3, start=1):
        rows.append({"id": f"C{i}", "email": f"c{i}@example.com", "first_name": f"Name{i}",
                     "tier": tier})
    if renamed:
        rows[6]["first_name"] = "Renamed"
    if extra:
        rows.append({"id": "C10", "email": "c10@example.com", "first_name": "New",
                     "tier": "normal"})
    return rows


def test_one_module_edited_and_one_added(content_tree: Callable, tmp_path: Path) -> None:
    root = content_tree(campaigns={"tiny.yaml": CAMPAIGN}, templates={"page.html.j2": PAGE},
                        articles=ARTICLES, customers={"a.csv": people()})
    run_a, run_b = tmp_path / "A", tmp_path / "B"
    code, stdout, stderr = run_cli("run", "campaigns/tiny.yaml", "--out", run_a, "--as-of",
                                   AS_OF, cwd=root)
    assert code == 0, stdout + stderr

    (root / "articles" / "b.md").write_text(module_source(
        {"title": "Second piece", "priority": 1}, "The new second piece.\n"))
    (root / "articles" / "d.md").write_text(module_source(
        {"title": "Brand new for VIPs", "segments": ["vip"], "priority": 10}, "Fresh.\n"))
    write_customers_file(root / "data" / "b.csv", people(extra=True, renamed=True))
    code, stdout, stderr = run_cli("run", "campaigns/tiny.yaml", "--customers",
                                   root / "data" / "b.csv", "--out", run_b, "--as-of", AS_OF,
                                   cwd=root)
    assert code == 0, stdout + stderr
    versions_a = json.loads((run_a / "versions.json").read_text())["versions"]
    assert all(v["digests"]["articles"].keys() == set(v["modules"]["articles"])
               for v in versions_a)

    code, stdout, stderr = run_cli("diff", run_a, run_b, "--json", cwd=root)
    assert code == 0, stdout + stderr
    result = json.loads(stdout)
    by_id = {r["customer_id"]: r["version"] for r in read_manifest(run_a)}
    vip_a, normal_a, basic_a = by_id["C1"], by_id["C4"], by_id["C7"]
    after = {r["customer_id"]: r["version"] for r in read_manifest(run_b)}
    vip_b, normal_b = after["C1"], after["C4"]
    assert after["C7"] == basic_a   # unchanged version
    assert sorted(result["versions"]["added"]) == sorted([vip_b, normal_b])
    assert sorted(result["versions"]["removed"]) == sorted([vip_a, normal_a])
    assert result["versions"]["kept"] == 1
    changed = {c["version"]: c for c in result["versions"]["changed"]}
    assert changed[vip_b] == {"version": vip_b, "customers": 3, "was": vip_a,
                              "modules_added": {"articles": ["d"]},
                              "modules_removed": {"articles": ["c"]},
                              "modules_edited": {}, "other": []}
    assert changed[normal_b]["was"] == normal_a and changed[normal_b]["customers"] == 4
    assert changed[normal_b]["modules_edited"] == {"articles": ["b"]}
    assert changed[normal_b]["modules_added"] == {} == changed[normal_b]["modules_removed"]
    assert result["customers"] == {
        "changed": 7, "unchanged": 2, "only_in_a": 0, "only_in_b": 1,
        "why": {"status": 0, "modules": 3, "content": 3, "version": 0, "personal": 1}}
    samples = {s["customer_id"]: s for s in result["samples"]}
    assert set(samples) == {"C1", "C4", "C7"}   # one customer per changed version
    assert "-The old second piece." in samples["C4"]["diff"]
    assert "+The new second piece." in samples["C4"]["diff"]
    assert "+Brand new for VIPs" in samples["C1"]["diff"]
    assert "-Hello Name7" in samples["C7"]["diff"] and "+Hello Renamed" in samples["C7"]["diff"]

    code, stdout, stderr = run_cli("diff", run_a, run_b, cwd=root)
    assert code == 0, stdout + stderr
    assert "versions: 3 -> 3 (2 added, 2 removed, 1 unchanged)" in stdout
    assert f"+ {vip_b} (was {vip_a}): 3 customer(s)" in stdout
    assert "articles: + d" in stdout and "articles: - c" in stdout
    assert "articles: edited b" in stdout
    assert "customers: 9 -> 10; 7 edition(s) changed, 2 unchanged, 1 new" in stdout
    assert "3  different modules" in stdout and "1  same version, personal layer only" in stdout
    assert "--- a/text/C4.txt\n+++ b/text/C4.txt\n" in stdout

    code, _, stderr = run_cli("diff", run_a, tmp_path / "nope", cwd=root)
    assert code == 2 and "not a run folder" in stderr
