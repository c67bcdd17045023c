"""Who gets a campaign, through the real CLI on the sample content and 20,000 generated
customers: `audience:` (segment names, or a rule), `exclude:` and `require:` give
`excluded` rows with their reasons, no files for those customers, the counts in
report.md, and `validate` says the same audience before the run.

The expected status of every row is worked out here from the customer file itself.
"""

from __future__ import annotations

import csv
import re
import shutil
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import AS_OF, CONTENT_DIRS, REPO, read_manifest, run_cli

from edition.naming import relative_path

ROWS = 20_000
FRENCH_EVERY = 97   # these rows get locale fr: no article speaks it, the slot stays empty
AUDIENCE = "not in the audience (segment(s) mvc, senior)"
EXCLUDED = "excluded by rule 'tenure_months < 6'"
NOTHING = "nothing to send: slot 'articles' empty"
VIP_RULE = "lifetime_value >= 1000 and locale == 'es'"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample content, its newsletter aimed at mvc and senior customers."""
    root = tmp_path_factory.mktemp("audience") / "site"
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)
    path = root / "campaigns" / "weekly-newsletter.yaml"
    campaign = yaml.safe_load(path.read_text(encoding="utf-8"))
    campaign.update({"audience": ["mvc", "senior"], "exclude": "tenure_months < 6",
                     "require": ["articles"], "formats": ["html", "text"]})
    path.write_text(yaml.safe_dump(campaign, sort_keys=False, allow_unicode=True),
                    encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def people(site: Path) -> Path:
    """20,000 generated customers (seed 7); every 97th one reads French."""
    generated = site / "data" / "generated.csv"
    rc, _, stderr = run_cli("sample-data", "--customers", str(ROWS), "--seed", "7", "--out",
                            generated)
    assert rc == 0, stderr
    with generated.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for number, row in enumerate(rows, start=1):
        if number % FRENCH_EVERY == 0:
            row["locale"] = "fr"
    path = site / "data" / "customers.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def newsletter_expected(row: dict[str, str]) -> tuple[str, str | None]:
    """What the aimed newsletter does with one row: (status, reason)."""
    if not (float(row["lifetime_value"]) >= 5000 or int(row["age"]) >= 65):
        return "excluded", AUDIENCE
    if int(row["tenure_months"]) < 6:
        return "excluded", EXCLUDED
    if row["locale"] == "fr":
        return "excluded", NOTHING
    return "rendered", None


def vip_expected(row: dict[str, str]) -> tuple[str, str | None]:
    if float(row["lifetime_value"]) >= 1000 and row["locale"] == "es":
        return "rendered", None
    return "excluded", f"not in the audience (rule {VIP_RULE!r})"


def run(site: Path, campaign: str, customers: Path, out: Path) -> dict[str, Any]:
    rc, stdout, stderr = run_cli("run", campaign, "--customers", customers, "--out", out,
                                 "--as-of", AS_OF, cwd=site, timeout=600)
    assert rc == 0, stdout + stderr
    return {"stdout": stdout, "manifest": read_manifest(out), "out": out,
            "report": (out / "report.md").read_text(encoding="utf-8")}


@pytest.fixture(scope="module")
def newsletter(site: Path, people: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> dict[str, Any]:
    return run(site, "campaigns/weekly-newsletter.yaml", people,
               tmp_path_factory.mktemp("runs") / "newsletter")


@pytest.fixture(scope="module")
def vip(site: Path, people: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run(site, "campaigns/vip-offers-es.yaml", people,
               tmp_path_factory.mktemp("runs") / "vip")


def title(module: Path) -> str:
    return yaml.safe_load(module.read_text(encoding="utf-8").split("---\n")[1])["title"]


def files_on_disk(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.parent != out}


def check_statuses(result: dict[str, Any], people: Path, expected: Any,
                   formats: tuple[str, ...]) -> Counter[tuple[str, str | None]]:
    """Every row as worked out from the file; files for the rendered ones only."""
    rows = rows_of(people)
    manifest = result["manifest"]
    assert [m["customer_id"] for m in manifest] == [r["id"] for r in rows]
    counted: Counter[tuple[str, str | None]] = Counter()
    for row, entry in zip(rows, manifest, strict=True):
        status, reason = expected(row)
        got = entry["reason"]
        if reason == NOTHING and got and got.startswith(NOTHING + ": "):
            got = NOTHING  # then the candidates and why each was skipped (tested below)
        assert (entry["status"], got) == (status, reason), row
        counted[(status, reason)] += 1
        if status == "excluded":
            assert entry["files"] == {} and entry["version"] is None, entry
        else:
            assert set(entry["files"]) == set(formats) and entry["version"], entry
    named = {rel for m in manifest for rel in m["files"].values()}
    assert files_on_disk(result["out"]) == named
    for entry in manifest:
        if entry["status"] == "excluded":
            for fmt in formats:
                assert not (result["out"] / relative_path(fmt, entry["customer_id"])).exists()
    return counted


def report_count(report: str, status: str) -> int:
    match = re.search(rf"^\| {status} \| ([\d,]+) \|$", report, re.M)
    assert match, f"no {status} row in the report's status table"
    return int(match.group(1).replace(",", ""))


def reason_count(report: str, reason: str) -> int:
    section = report.split("## Excluded customers", 1)[1]
    match = re.search(rf"^\| {re.escape(reason)} \| ([\d,]+) \|", section, re.M)
    assert match, f"{reason!r} not in the report's excluded customers:\n{section[:2000]}"
    return int(match.group(1).replace(",", ""))


def test_segment_audience_exclude_rule_and_required_slot(newsletter: dict[str, Any],
                                                         people: Path) -> None:
    counted = check_statuses(newsletter, people, newsletter_expected, ("html", "text"))
    # each way of being left out happens, and so does being in
    for key in (("excluded", AUDIENCE), ("excluded", EXCLUDED), ("excluded", NOTHING),
                ("rendered", None)):
        assert counted[key] >= 20, (key, counted)
    report = newsletter["report"]
    excluded = sum(n for (s, _), n in counted.items() if s == "excluded")
    assert report_count(report, "rendered") == counted[("rendered", None)]
    assert report_count(report, "excluded") == excluded
    assert "## Excluded customers" in report
    # report.md groups reasons by their words (the audience one without its segment list)
    assert reason_count(report, "not in the audience") == counted[("excluded", AUDIENCE)]
    assert reason_count(report, EXCLUDED) == counted[("excluded", EXCLUDED)]
    assert reason_count(report, NOTHING) == counted[("excluded", NOTHING)]
    assert (f"{ROWS:,} customers ({excluded:,} excluded, "
            f"{counted[('rendered', None)]:,} rendered)") in newsletter["stdout"]


def test_validate_tells_the_same_audience_before_the_run(site: Path, people: Path,
                                                         newsletter: dict[str, Any]) -> None:
    statuses = Counter(m["status"] for m in newsletter["manifest"])
    reasons = Counter(m["reason"] for m in newsletter["manifest"] if m["status"] == "excluded")
    rc, stdout, stderr = run_cli("validate", "campaigns/weekly-newsletter.yaml", "--customers",
                                 people, cwd=site, timeout=600)
    assert rc == 0, stdout + stderr
    assert (f"audience: {statuses['rendered']:,} customers ({statuses['excluded']:,} "
            f"excluded, 0 suppressed)") in stdout
    assert f"{reasons[AUDIENCE]:,} × excluded: not in the audience" in stdout
    assert f"{reasons[EXCLUDED]:,} × excluded: {EXCLUDED}" in stdout
    # each such row names its candidates; validate counts them under the slot's reason
    nothing = sum(n for reason, n in reasons.items() if reason.startswith(NOTHING))
    assert nothing and f"{nothing:,} × excluded: {NOTHING}" in stdout


def test_the_vip_sample_campaign_reaches_only_its_rule(vip: dict[str, Any], people: Path,
                                                       site: Path) -> None:
    counted = check_statuses(vip, people, vip_expected, ("html", "text", "eml"))
    rendered = counted[("rendered", None)]
    assert 1000 < rendered < ROWS // 5
    assert report_count(vip["report"], "rendered") == rendered
    assert report_count(vip["report"], "excluded") == ROWS - rendered
    # nobody in it gets an empty edition: a greeting, an article and an offer, in Spanish
    for entry in [m for m in vip["manifest"] if m["status"] == "rendered"][::97]:
        assert all(entry["modules"][slot] for slot in ("greeting", "articles", "offer"))
        html = (vip["out"] / entry["files"]["html"]).read_text(encoding="utf-8")
        assert '<html lang="es">' in html and "Solo para usted" in html
        for slot, folder in (("articles", "articles"), ("offer", "offers")):
            for module_id in entry["modules"][slot]:
                assert escape(title(site / folder / f"{module_id}.md")) in html, module_id
    # validate agrees with the run
    rc, stdout, stderr = run_cli("validate", "campaigns/vip-offers-es.yaml", "--customers",
                                 people, cwd=site, timeout=600)
    assert rc == 0, stdout + stderr
    assert (f"audience: {rendered:,} customers ({ROWS - rendered:,} excluded, "
            f"0 suppressed)") in stdout


def test_nothing_to_send_names_the_modules_and_why_each_was_skipped(content_tree, tmp_path):
    """"slot 'offer' empty" alone left a team guessing: the reason names the expired
    offer (and its date), the one for another segment, the one in another language."""
    root = content_tree(
        campaigns={"club.yaml": {
            "name": "club", "template": "t.html.j2", "formats": ["html"],
            "sender": "Club <club@example.com>", "subject": "News", "kind": "transactional",
            "segments": {"vip": "visits >= 10"},
            "slots": {"offer": {"kind": "offer", "count": 1}}, "require": ["offer"]}},
        templates={"t.html.j2": "{% for o in offer %}{{ o.html }}{% endfor %}"},
        offers={"spring-sale.md": {"title": "Spring sale", "valid_until": "2026-03-31"},
                "vip-night.md": {"title": "VIP night", "segments": ["vip"]},
                "oferta.md": {"title": "Oferta", "locales": ["es"]},
                "other.md": {"title": "Other", "campaigns": ["another"]}},
        customers={"c.csv": [{"id": "G1", "email": "g1@example.com", "visits": 2},
                             {"id": "G2", "email": "g2@example.com", "visits": 12}]})
    out = tmp_path / "out"
    rc, stdout, stderr = run_cli("run", "campaigns/club.yaml", "--customers", "data/c.csv",
                                 "--out", out, "--as-of", "2026-05-02", cwd=root)
    assert rc == 0, stdout + stderr
    rows = {m["customer_id"]: m for m in read_manifest(out)}
    assert rows["G2"]["status"] == "rendered"
    assert rows["G1"]["status"] == "excluded"
    assert rows["G1"]["reason"] == (
        "nothing to send: slot 'offer' empty: oferta (locale: en not in [es]), "
        "spring-sale (expired: valid until 2026-03-31), "
        "vip-night (segment mismatch: needs vip); "
        "1 offer module(s) are for other campaigns only")
    # the report still counts such rows together
    assert reason_count((out / "report.md").read_text(encoding="utf-8"),
                        "nothing to send: slot 'offer' empty") == 1
    rc, stdout, stderr = run_cli("preview", "campaigns/club.yaml", "--customer", "G1",
                                 "--customers", "data/c.csv", "--as-of", "2026-05-02",
                                 cwd=root)
    assert rc == 0, stdout + stderr
    assert "spring-sale (expired: valid until 2026-03-31)" in stdout
