"""Preflight: what can be known before a run writes a file, said in `validate` and kept
in the run's report and run.json.

Each check is driven through the real command line on a small content tree built for
it: a missing column, a field read that the file lacks, Gmail's clip (a 150 KB edition
with the unsubscribe link at its end), images without alt text, no lang, no preheader,
and the audience. An error stops a run before its folder exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GOOD_PAGE = ("<!doctype html><html lang=en><body>"
             "<div class=preheader style=\"display:none\">This week</div>"
             "{% for a in articles %}{{ a.html }}{% endfor %}"
             "<a href=\"{{ customer.unsubscribe_url }}\">Unsubscribe</a></body></html>\n")
BARE_PAGE = ("<!doctype html><html><body><img src=\"https://example.com/logo.png\">"
             "{% for a in articles %}{{ a.html }}{% endfor %}</body></html>\n")
ARTICLE = "Hello {{ customer.first_name }}."
CLIPPED_PAGE = ("<!doctype html><html lang=en><body>"
                "<div class=preheader style=\"display:none\">This week</div>"
                "{% for a in articles %}{{ a.html }}{% endfor %}"
                "<p>{{ 'padding ' * 19000 }}</p>"
                "<a href=\"{{ customer.unsubscribe_url }}\">Unsubscribe</a></body></html>\n")


def campaign(**extra: Any) -> dict[str, Any]:
    return {"name": "pf", "template": "page.html.j2",
            "slots": {"articles": {"kind": "article", "count": 1}},
            "segments": {"vip": "customer.tier == 'gold'"},
            "formats": ["html", "eml"], "customers": "data/customers.csv",
            "sender": "News <news@example.com>", "subject": "Hello",
            "unsubscribe_url": "https://example.com/u", **extra}


def rows(n: int = 6, **columns: Any) -> list[dict[str, Any]]:
    return [{"id": f"C{i}", "email": f"c{i}@example.com", "first_name": "Ann",
             "tier": "gold" if i % 2 else "silver", **columns} for i in range(n)]


def tree(content_tree, page: str = GOOD_PAGE, customers: list | None = None,
         **extra: Any) -> Path:
    return content_tree(campaigns={"pf.yaml": campaign(**extra)},
                        templates={"page.html.j2": page},
                        articles={"a.md": {"title": "A", "body": ARTICLE}},
                        customers={"customers.csv": customers or rows()})


def warnings_of(stdout: str) -> list[str]:
    return [line.removeprefix("warning: ") for line in stdout.splitlines()
            if line.startswith("warning: ")]


def test_a_clean_campaign_has_no_warnings_and_says_its_audience(content_tree, cli) -> None:
    root = tree(content_tree)
    rc, stdout, stderr = cli("validate", "campaigns/pf.yaml", "--strict", cwd=root)
    assert rc == 0, stdout + stderr
    assert warnings_of(stdout) == []
    assert "audience: 6 customers (0 excluded, 0 suppressed); 2 versions" in stdout


def test_the_html_checks_each_name_what_to_fix(content_tree, cli) -> None:
    root = tree(content_tree, page=BARE_PAGE)
    rc, stdout, stderr = cli("validate", "campaigns/pf.yaml", cwd=root)
    assert rc == 0, stdout + stderr   # warnings only
    found = "\n".join(warnings_of(stdout))
    assert "images without alt text" in found
    assert "<html> has no lang attribute" in found
    assert "no preheader" in found
    assert "2 version(s)" in found   # said once for all versions, not per customer
    rc, stdout, stderr = cli("validate", "campaigns/pf.yaml", "--strict", cwd=root)
    assert rc == 2


def test_an_edition_over_gmails_clip_with_its_unsubscribe_link_after_it(content_tree,
                                                                         cli) -> None:
    root = tree(content_tree, page=CLIPPED_PAGE)
    rc, stdout, stderr = cli("validate", "campaigns/pf.yaml", cwd=root)
    assert rc == 0, stdout + stderr
    found = "\n".join(warnings_of(stdout))
    assert "over 102 KB" in found and "Gmail clips it" in found
    assert "unsubscribe link comes after Gmail's 102 KB clip point" in found


def test_a_field_the_file_lacks_gets_a_did_you_mean(content_tree, cli) -> None:
    root = tree(content_tree, segments={"vip": "customer.teir == 'gold'"})
    rc, stdout, stderr = cli("validate", "campaigns/pf.yaml", cwd=root)
    assert rc == 0, stdout + stderr
    found = "\n".join(warnings_of(stdout))
    assert "segment 'vip' reads 'teir'" in found and "did you mean 'tier'" in found, found


def test_a_missing_email_column_is_one_error_naming_the_file(content_tree, cli) -> None:
    bad = [{"id": r["id"], "e_mail": r["email"], "tier": r["tier"]} for r in rows()]
    root = tree(content_tree, customers=bad)
    rc, stdout, stderr = cli("validate", "campaigns/pf.yaml", cwd=root)
    assert rc == 2, stdout + stderr
    assert "customers.csv" in stderr and "no email column" in stderr
    assert "did you mean 'e_mail'" in stderr
    assert stderr.count("no email column") == 1
    out = root / "out" / "run"
    rc, stdout, stderr = cli("run", "campaigns/pf.yaml", "--out", str(out), cwd=root)
    assert rc == 2 and not out.exists()   # nothing written


def test_marketing_mail_without_an_unsubscribe_url_is_refused_for_a_send(content_tree,
                                                                         cli) -> None:
    data = campaign()
    del data["unsubscribe_url"]
    root = content_tree(campaigns={"pf.yaml": data}, templates={"page.html.j2": GOOD_PAGE},
                        articles={"a.md": {"title": "A"}}, customers={"customers.csv": rows()})
    rc, stdout, stderr = cli("validate", "campaigns/pf.yaml", cwd=root)
    assert "needs unsubscribe_url" in stdout and "a send is refused" in stdout
    # the page prints customer.unsubscribe_url, which no customer gets without it: even
    # a dry run would fail every one of them (issue 17, finding 17)
    assert rc == 2 and "templates/page.html.j2:1: prints customer.unsubscribe_url" in stderr
    out = root / "sent"
    rc, stdout, stderr = cli("run", "campaigns/pf.yaml", "--out", str(out), "--send",
                             "--to", f"local:{root / 'mailbox'}", "--yes", cwd=root)
    assert rc == 2 and "unsubscribe_url is required" in stderr, stdout + stderr
    assert not out.exists() and not (root / "mailbox").exists()


def test_the_audience_and_the_warnings_are_kept_in_the_report_and_run_json(content_tree,
                                                                           cli) -> None:
    root = tree(content_tree, page=BARE_PAGE, audience="vip")
    out = root / "out" / "run"
    rc, stdout, stderr = cli("validate", "campaigns/pf.yaml", cwd=root)
    assert "audience: 3 customers (3 excluded, 0 suppressed)" in stdout, stdout
    rc, stdout, stderr = cli("run", "campaigns/pf.yaml", "--out", str(out), cwd=root)
    assert rc == 0, stdout + stderr
    report = (out / "report.md").read_text(encoding="utf-8")
    section = report.split("## Preflight", 1)[1].split("\n## ", 1)[0]
    assert "| warning | " in section and "no lang attribute" in section
    assert "6 customer rows: 3 in the audience, 3 excluded" in section
    recorded = json.loads((out / "run.json").read_text())["preflight"]
    assert recorded["errors"] == []
    assert any("images without alt text" in w for w in recorded["warnings"])
    assert recorded["facts"][0].startswith("6 customer rows: 3 in the audience")


def many(n: int, odd_one: int | None = None) -> list[dict[str, Any]]:
    found = rows(n)
    if odd_one is not None:
        found[odd_one]["tier"] = "platinum"
    return found


def test_the_pool_scans_what_one_process_scans(content_tree, cli) -> None:
    """With several batches, preflight's pass runs in the pool's workers side by side:
    the same audience, versions and warnings as the pass in one process."""
    root = tree(content_tree, page=BARE_PAGE, audience="vip", customers=many(1200))
    recorded = {}
    for workers, size in (("1", "500"), ("2", "100")):
        out = root / "out" / f"w{workers}"
        rc, stdout, stderr = cli("run", "campaigns/pf.yaml", "--out", str(out),
                                 "--workers", workers, "--batch-size", size, cwd=root)
        assert rc == 0, stdout + stderr
        recorded[workers] = json.loads((out / "run.json").read_text())["preflight"]
    assert recorded["1"] == recorded["2"]
    assert recorded["2"]["facts"][0].startswith("1,200 customer rows: 600 in the audience")
    assert any("images without alt text" in w for w in recorded["2"]["warnings"])


def test_a_version_that_cannot_render_late_in_the_file_stops_the_pool_run(content_tree,
                                                                         cli) -> None:
    """One customer in the 10th of 12 batches gets a module that cannot render: the
    workers' scan finds it, and the run stops before its folder exists."""
    root = content_tree(
        campaigns={"pf.yaml": campaign(segments={"vip": "customer.tier == 'gold'",
                                                 "rare": "customer.tier == 'platinum'"})},
        templates={"page.html.j2": GOOD_PAGE},
        articles={"a.md": {"title": "A", "body": ARTICLE},
                  "boom.md": "---\ntitle: Boom\nsegments: [rare]\npriority: 9\n---\n"
                             "Big:\n{{ 'x' * 10**9 }}\n"},
        customers={"customers.csv": many(1200, odd_one=950)})
    out = root / "out" / "run"
    rc, stdout, stderr = cli("run", "campaigns/pf.yaml", "--out", str(out), "--workers", "2",
                             "--batch-size", "100", cwd=root)
    assert rc == 2, stdout + stderr
    assert "boom.md" in stderr and "customer C950" in stderr, stderr
    assert "Traceback" not in stderr and not out.exists()
