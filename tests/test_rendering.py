# ruff: noqa: E501  (templates are easier to read on one line)
"""Rendering a run: missing fields fail one customer (named), values are escaped, the
template context is the contract's, and shared output equals the whole render."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import read_manifest

from edition.audience.customers import read_customers
from edition.render.editions import EditionRenderer, RenderFailure
from edition.render.plan import Plan

AS_OF = "2026-11-02"
PAGE = """\
<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>p { margin: 0 } .plan { color: red }</style></head>
<body>
<p>Hello {{ customer.first_name | default('there') }}</p>
<p class="plan">Your plan: {{ customer.plan_name }}</p>
<p>Segments: {{ segments | join(',') }} · campaign {{ campaign.name }} · {{ campaign.footer.phone }}</p>
{% for g in greeting %}<div class="greeting" data-kind="{{ g.kind }}" data-id="{{ g.id }}">{{ g.html }}</div>{% endfor %}
{% for a in articles %}<h2>{{ a.title }}</h2><small>{{ a.meta.author | default('') }}</small>{{ a.html }}{% endfor %}
</body></html>
"""
TEXT = """\
Hello {{ customer.first_name | default('there') }}, plan {{ customer.plan_name }}
{% for a in articles %}* {{ a.title }}: {{ a.text }}
{% endfor %}"""
CAMPAIGN = {
    "name": "plans",
    "template": "plans.html.j2",
    "text_template": "plans.txt.j2",
    "subject": "{{ customer.first_name | default('Hello') }}, your {{ customer.plan_name }} news",
    "sender": "Acme Plans <plans@acme.example>",
    "customers": "data/customers.csv",
    "segments": {"vip": "spend >= 100", "senior": "age >= 65"},
    "slots": {"greeting": {"kind": "greeting", "count": 1},
              "articles": {"kind": "article", "count": 2}},
    "formats": ["html", "text", "eml"],
    "footer": {"phone": "+1 555 0100", "address": "1 Main St"},
    "unsubscribe_url": "https://acme.example/unsubscribe",
}
MODULES = {
    "articles": {
        "news.md": {"title": "News & notes", "author": "Ed", "priority": 2,
                    "body": "Some **news**.\n\n<script>alert('module')</script>\n"},
        "vip.md": {"title": "VIP corner", "segments": ["vip"], "priority": 9,
                   "body": "Thanks, {{ customer.first_name | default('friend') }}.\n"},
        "tips.md": {"title": "Tips", "body": "A tip.\n"},
    },
    "greetings": {"hi.md": {"title": "Hi", "body": "Hi {{ customer.first_name }}!\n"}},
}
SCRIPT = "<script>alert(1)</script>"
CUSTOMERS = [
    {"id": "c1", "email": "c1@example.com", "first_name": "Ann", "plan_name": "Gold",
     "spend": 150, "age": 70},
    {"id": "c2", "email": "c2@example.com", "first_name": "Bob", "spend": 20, "age": 30},
    {"id": "c3", "email": "c3@example.com", "first_name": SCRIPT, "plan_name": "Basic & <b>",
     "spend": 5, "age": 40},
    {"id": "c4", "email": "c4@example.com", "first_name": "", "plan_name": "Silver",
     "spend": 500, "age": 50},
    {"id": "c5", "email": "c5@example.com", "first_name": "Eve", "plan_name": "Gold",
     "spend": "", "age": 80},
]


@pytest.fixture
def plans_root(content_tree) -> Path:
    return content_tree(campaigns={"plans.yaml": CAMPAIGN},
                        templates={"plans.html.j2": PAGE, "plans.txt.j2": TEXT},
                        articles=MODULES["articles"], greetings=MODULES["greetings"],
                        customers={"customers.csv": CUSTOMERS})


@pytest.fixture
def plans_run(plans_root: Path, cli, manifest_of) -> tuple[Path, dict[str, dict[str, Any]]]:
    out = plans_root / "out"
    rc, _, stderr = cli("run", "campaigns/plans.yaml", "--out", str(out), "--as-of", AS_OF,
                        cwd=plans_root)
    assert rc == 3, stderr  # finished, with failed customers (the campaign allows none)
    assert "Traceback" not in stderr
    return out, {row["customer_id"]: row for row in manifest_of(out)}


def test_missing_field_fails_that_customer_only_naming_the_field(plans_run) -> None:
    out, rows = plans_run
    assert rows["c2"]["status"] == "failed"
    assert "customer has no field 'plan_name'" in rows["c2"]["reason"]
    assert rows["c2"]["files"] == {}
    written = {str(p.relative_to(out)) for p in out.glob("*/*")}
    assert written == {rel for row in rows.values() for rel in row["files"].values()}
    for cid in ("c1", "c3", "c5"):
        assert rows[cid]["status"] == "rendered", rows[cid]
        assert rows[cid]["reason"] is None
        for rel in rows[cid]["files"].values():
            assert (out / rel).is_file()
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "customer has no field 'plan_name'" in report and "c2" in report


def test_customer_values_are_escaped_in_html_and_intact_in_the_subject(plans_run) -> None:
    out, rows = plans_run
    html = (out / rows["c3"]["files"]["html"]).read_text(encoding="utf-8")
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Basic &amp; &lt;b&gt;" in html
    assert "alert('module')" not in html          # module HTML is sanitized
    text = (out / rows["c3"]["files"]["text"]).read_text(encoding="utf-8")
    assert f"Hello {SCRIPT}, plan Basic & <b>" in text   # text is not HTML-escaped
    message = email.message_from_bytes((out / rows["c3"]["files"]["eml"]).read_bytes(),
                                       policy=email.policy.default)
    assert message["Subject"] == f"{SCRIPT}, your Basic & <b> news"


def test_context_has_segments_campaign_and_slot_modules(plans_run) -> None:
    out, rows = plans_run
    assert rows["c1"]["segments"] == ["vip", "senior"]
    assert rows["c1"]["modules"] == {"greeting": ["hi"], "articles": ["vip", "news"]}
    html = (out / rows["c1"]["files"]["html"]).read_text(encoding="utf-8")
    assert "Segments: vip,senior · campaign plans · +1 555 0100" in html
    assert 'data-kind="greeting"' in html and 'data-id="hi"' in html
    assert "<small>Ed</small>" in html
    assert "Hi Ann!" in html and "Thanks, Ann." in html
    assert "News &amp; notes" in html


def test_empty_cell_is_undefined_and_default_applies(plans_run) -> None:
    out, rows = plans_run
    # c5: spend is empty, so the `vip` rule is false (not an error) and default() is unused
    assert rows["c5"]["segments"] == ["senior"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "`vip`: field `spend` missing for 1 customer(s)" in report
    # c4: first_name is empty: the page's default() covers it, the greeting module's
    # "Hi {{ customer.first_name }}!" does not -> that customer fails, naming the field
    assert rows["c4"]["status"] == "failed"
    assert "customer has no field 'first_name'" in rows["c4"]["reason"]


def test_report_says_how_many_customers_took_the_shared_path_and_why_not(content_tree,
                                                                        cli) -> None:
    # a condition on the customer is shared now; a value first in a <pre> is not (the
    # HTML parser drops its leading newline), and the report names its line
    page = PAGE.replace("<p>Hello {{ customer.first_name | default('there') }}</p>",
                        "<p>{% if customer.plan_name == 'Gold' %}Gold!{% endif %}</p>\n"
                        "<pre>{{ customer.first_name | default('') }}</pre>")
    root = content_tree(campaigns={"plans.yaml": CAMPAIGN},
                        templates={"plans.html.j2": page, "plans.txt.j2": TEXT},
                        articles=MODULES["articles"], greetings=MODULES["greetings"],
                        customers={"customers.csv": CUSTOMERS})
    rc, _, stderr = cli("run", "campaigns/plans.yaml", "--out", "out", "--as-of", AS_OF,
                        cwd=root)
    assert rc == 3, stderr  # finished, with failed customers (the campaign allows none)
    report = (root / "out" / "report.md").read_text(encoding="utf-8")
    rendering = json.loads((root / "out" / "run.json").read_text())["rendering"]["html"]
    rendered = sum(1 for r in read_manifest(root / "out") if r["status"] == "rendered")
    assert rendering["customers"] == rendered and rendering["shared"] == 0
    (reason,) = rendering["reasons"]
    assert reason["customers"] == rendered
    assert "starts a <pre>" in reason["reason"] and "templates/plans.html.j2:5" in reason["reason"]
    assert f"html, text and eml: 0 of {rendered} customers" in report
    assert "templates/plans.html.j2:5" in report
    versions = json.loads((root / "out" / "versions.json").read_text())["versions"]
    assert all(v["rendering"]["page"] == "shared" for v in versions)


def test_every_run_file_equals_the_whole_render(plans_root: Path, plans_run) -> None:
    out, rows = plans_run
    plan = Plan.load(plans_root / "campaigns" / "plans.yaml", as_of=dt.date.fromisoformat(AS_OF))
    reference = EditionRenderer(plan.campaign, plan.as_of, kinds=("html", "text", "subject"))
    for row in read_customers(plans_root / str(plan.campaign.customers), need_email=False):
        version = plan.version_of(dict(row.fields))[3]
        manifest = rows[row.customer_id]
        if manifest["status"] == "failed":
            with pytest.raises(RenderFailure):
                reference.whole(version, dict(row.fields))
            continue
        whole = reference.whole(version, dict(row.fields))
        assert (out / manifest["files"]["html"]).read_text(encoding="utf-8") == whole.html
        assert (out / manifest["files"]["text"]).read_text(encoding="utf-8") == whole.text
        assert manifest["version"] == version.id


@pytest.mark.parametrize("conditional", [False, True])
def test_a_personal_lang_keeps_the_pdf_fast_path(content_tree, cli, tmp_path: Path,
                                                 conditional: bool) -> None:
    """Issue 19: a campaign whose only personal value outside the text was
    `lang="{{ customer.locale | default('en') }}"` had 0 customers on the PDF fast path.
    The locale is the version's: folded into the page. A paragraph that a condition on
    the customer adds or drops makes two shapes, each laid out once (the dropped one
    used to leave a placeholder line in the layout: every customer fell back). Pages
    equal the whole render's."""
    import io
    import subprocess

    from PIL import Image, ImageChops
    from pypdf import PdfReader

    from edition.content.campaign import load_campaign
    from edition.render.encoding import pdf_options
    from renderers.pdf import render_pdf

    page = PAGE.replace("<html>", "<html lang=\"{{ customer.locale | default('en') }}\">") \
        .replace("<p class=\"plan\">Your plan: {{ customer.plan_name }}</p>",
                 "{% if customer.city %}<p>Visit us in {{ customer.city }}.</p>{% endif %}"
                 if conditional else "")
    text = TEXT.replace(", plan {{ customer.plan_name }}", "")
    campaign = dict(CAMPAIGN, formats=["html", "pdf"],
                    subject="{{ customer.first_name | default('Hello') }}, news")
    names = ["Ann", "Bob", "Maribel", "Jo", "Bartholomew", "Zoë", "Ingrid", "Kai"]
    customers = [{"id": f"p{i}", "email": f"p{i}@example.com", "first_name": name,
                  "locale": "en", "spend": 5, "age": 30,
                  "city": "Leeds" if conditional and i % 2 else ""}
                 for i, name in enumerate(names)]
    root = content_tree(campaigns={"plans.yaml": campaign},
                        templates={"plans.html.j2": page, "plans.txt.j2": text},
                        articles=MODULES["articles"], greetings=MODULES["greetings"],
                        customers={"customers.csv": customers})
    rc, stdout, stderr = cli("run", "campaigns/plans.yaml", "--out", "out", "--as-of", AS_OF,
                             "--workers", "1", cwd=root, timeout=600)
    assert rc == 0, stdout + stderr
    pdf = json.loads((root / "out" / "run.json").read_text())["rendering"]["pdf"]
    assert pdf["customers"] == 8
    # at most the first customer of each shape is rendered whole
    assert pdf["fast"] >= 8 - (1 + conditional), pdf["reasons"]
    files = {r["customer_id"]: r["files"] for r in read_manifest(root / "out")}
    options = pdf_options(load_campaign(root / "campaigns" / "plans.yaml"))
    for customer in ("p6", "p7"):  # one of each shape
        html = (root / "out" / files[customer]["html"]).read_text(encoding="utf-8")
        assert 'lang="en"' in html
        assert ("Visit us in Leeds" in html) == (conditional and customer == "p7")
        fast = (root / "out" / files[customer]["pdf"]).read_bytes()
        whole = render_pdf(html, **options, locale="en")  # a run without sharing writes it
        assert len(PdfReader(io.BytesIO(fast)).pages) == len(
            PdfReader(io.BytesIO(whole)).pages)
        images = []
        for name, data in (("fast", fast), ("whole", whole)):
            (tmp_path / f"{customer}{name}.pdf").write_bytes(data)
            subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1",
                            str(tmp_path / f"{customer}{name}.pdf"),
                            str(tmp_path / f"{customer}{name}")], check=True)
            images.append(Image.open(next(tmp_path.glob(f"{customer}{name}-*.png")))
                          .convert("RGB"))
        assert ImageChops.difference(*images).getbbox() is None, customer
