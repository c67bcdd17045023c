"""Templates we did not write, through the real command line (issue 19, item 6).

Each layout of tests/corpus/templates (Cerberus, Lee Munroe's responsive template,
Postmark's receipt, Mailchimp's simple-basic blueprint, Foundation for Emails' newsletter,
the MJML team's newsletter as MJML compiles it) is a campaign over the sample modules;
its customers look like a shop's export (an empty city, no points, no orders, a VIP
flag, a hostile name now and then). validate passes, the run renders every customer
from the version's shared rendering in html, text and eml, and says so in run.json and
report.md; PDF and its preflight work on the same layouts; and so do the messy customer
files of tests/corpus/customers (semicolons, BOM, UTF-16, Windows-1252...).
"""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures_corpus import CORPUS, NAMES, corpus_customers, corpus_site, write_corpus_customers

AS_OF = "2026-11-02"
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = corpus_site(tmp_path_factory.mktemp("corpus") / "site")
    write_corpus_customers(root / "customers.jsonl", 60)
    return root


def run_json(out: Path) -> dict[str, Any]:
    return json.loads((out / "run.json").read_text(encoding="utf-8"))


def test_the_corpus_is_outside_work_with_its_licences() -> None:
    assert len(NAMES) >= 4
    for name in NAMES:
        licence = (CORPUS / name / "LICENCE").read_text(encoding="utf-8")
        assert "Adapted from" in licence and ("MIT License" in licence
                                              or "Creative Commons" in licence), name


@pytest.mark.parametrize("name", NAMES)
def test_a_corpus_campaign_validates_and_renders_once(site: Path, cli: Cli, tmp_path: Path,
                                                      name: str) -> None:
    campaign = site / "campaigns" / f"{name}.yaml"
    code, out, err = cli("validate", campaign, "--customers", site / "customers.jsonl",
                         cwd=site)
    assert code == 0, out + err
    folder = tmp_path / "out"
    code, out, err = cli("run", campaign, "--customers", site / "customers.jsonl",
                         "--formats", "html,text,eml", "--as-of", AS_OF, "--out", folder,
                         "--workers", "1", cwd=site, timeout=600)
    assert code == 0, out + err
    rows = [json.loads(line) for line in
            (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 60
    # an empty or missing city, no points, no orders: tested, never a failed customer
    assert {r["status"] for r in rows} == {"rendered"}, [r for r in rows
                                                         if r["status"] != "rendered"][:3]
    rendering = run_json(folder)["rendering"]
    assert rendering["html"]["customers"] == 60
    assert rendering["html"]["shared"] == 60, rendering["html"]["reasons"]
    assert rendering["versions"]["shared"] == rendering["versions"]["total"] > 1
    report = (folder / "report.md").read_text(encoding="utf-8")
    assert "60 of 60 customers (100.0%) from their version's shared rendering" in report

    customers = {c["id"]: c for c in corpus_customers(60)}
    for row in rows[:20]:
        fields = customers[row["customer_id"]]
        html = (folder / row["files"]["html"]).read_text(encoding="utf-8")
        lang = str(fields.get("locale") or "en")
        assert f'lang="{lang}"' in html
        assert f"id={fields['id']}" in html          # the customer's own links
        message = email.message_from_bytes((folder / row["files"]["eml"]).read_bytes(),
                                            policy=email.policy.default)
        kinds = {part.get_content_type() for part in message.walk()}
        assert {"text/plain", "text/html"} <= kinds
        text = (folder / row["files"]["text"]).read_text(encoding="utf-8")
        assert text.strip()
        if fields.get("city") and fields["city"].isalpha() and name in ("cerberus",
                                                                        "mailchimp-simple"):
            assert fields["city"].title() in html or fields["city"] in html


def test_corpus_pdfs_render_and_preflight_refuses_a_remote_image(
        site: Path, cli: Cli, tmp_path: Path) -> None:
    """PDF for every layout (its images are local files under templates/), and the
    preflight stops the run (exit 2, naming the template) when a layout asks for an
    image from a host the campaign did not allow, as the original Cerberus does."""
    few = tmp_path / "few.jsonl"
    write_corpus_customers(few, 3, seed=5)
    for name in NAMES:
        folder = tmp_path / f"pdf-{name}"
        code, out, err = cli("run", site / "campaigns" / f"{name}.yaml", "--customers", few,
                             "--formats", "pdf", "--as-of", AS_OF, "--out", folder,
                             "--workers", "1", cwd=site, timeout=900)
        assert code == 0, out + err
        pdfs = sorted((folder / "pdf").glob("*.pdf"))
        assert len(pdfs) == 3
        for pdf in pdfs:
            text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True,
                                  check=True, text=True).stdout
            assert "Hi " in text, (name, text[:200])
        assert run_json(folder)["rendering"]["pdf"]["customers"] == 3

    hostile = tmp_path / "remote"
    shutil.copytree(site, hostile, ignore=shutil.ignore_patterns("out*"))
    template = hostile / "templates" / "cerberus" / "cerberus.html.j2"
    template.write_text(template.read_text(encoding="utf-8").replace(
        "cerberus/images/placeholder.svg", "https://via.placeholder.com/600x230", 1),
        encoding="utf-8")
    code, out, err = cli("run", hostile / "campaigns" / "cerberus.yaml", "--customers", few,
                         "--formats", "pdf", "--as-of", AS_OF, "--out", tmp_path / "refused",
                         "--workers", "1", cwd=hostile, timeout=600)
    assert code == 2, out + err
    assert "via.placeholder.com" in out + err and "Traceback" not in out + err
    assert not (tmp_path / "refused" / "pdf").exists() or not any(
        (tmp_path / "refused" / "pdf").iterdir())


MESSY = Path(__file__).resolve().parent / "corpus" / "customers"
# the six people of tests/corpus/customers (its README.md), as they must come out
PEOPLE = {"C1": "José", "C2": "Zoë", "C3": "Françoise", "C4": "Ørjan", "C5": "Jürgen",
          "C6": "Ana"}
# file -> (rows, rejected); each corpus layout takes some of them in turn
MESSY_FILES = {"excel-semicolon-bom.csv": (6, 0), "semicolon.csv": (6, 0),
               "excel-unicode-text.txt": (6, 0), "tabs.tsv": (6, 0), "pipes.csv": (6, 0),
               "crlf.csv": (6, 0), "quoted-newlines.csv": (12, 1), "bom-crlf.jsonl": (6, 0),
               "excel-windows-1252.csv": (6, 0)}


@pytest.mark.parametrize("index", range(max(len(MESSY_FILES), len(NAMES))))
def test_corpus_campaigns_over_messy_customer_files(site: Path, cli: Cli, tmp_path: Path,
                                                    index: int) -> None:
    """A shop's own export, not our JSONL: semicolons and a decimal comma, a BOM, UTF-16,
    Windows-1252 (read with --encoding), quoted newlines. Every corpus layout validates
    (exit 0) and renders every readable row from its version's shared rendering in a dry
    run, the names as written; a row without an address is rejected, not the run."""
    name = NAMES[index % len(NAMES)]
    file = sorted(MESSY_FILES)[index % len(MESSY_FILES)]
    rows, rejected = MESSY_FILES[file]
    extra = ("--encoding", "windows-1252") if "1252" in file else ()
    campaign = site / "campaigns" / f"{name}.yaml"
    code, out, err = cli("validate", campaign, "--customers", MESSY / file, *extra, cwd=site)
    assert code == 0, out + err
    assert f"{rows} customer rows, {rejected} would be rejected" in out + err
    folder = tmp_path / "out"
    code, out, err = cli("run", campaign, "--customers", MESSY / file, *extra,
                         "--as-of", AS_OF, "--out", folder, "--workers", "1", cwd=site,
                         timeout=600)
    assert code == 0, out + err
    manifest = [json.loads(line) for line in
                (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(manifest) == rows
    assert sum(r["status"] == "rejected" for r in manifest) == rejected
    rendered = [r for r in manifest if r["status"] == "rendered"]
    assert len(rendered) == rows - rejected
    for row in rendered:
        html = (folder / row["files"]["html"]).read_text(encoding="utf-8")
        person = PEOPLE.get(row["customer_id"])
        assert person is None or person in html, (name, file, row["customer_id"])
        assert f"id={row['customer_id']}" in html
    html_path = run_json(folder)["rendering"]["html"]
    assert html_path["shared"] == html_path["customers"] == rows - rejected, html_path
