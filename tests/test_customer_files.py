"""Customer files as spreadsheets write them (issue 17, finding 18).

A semicolon-separated CSV (Excel in most of Europe), with or without a BOM, was read
as one column: "ok: 0 customer rows", then "no id column". A Windows-1252 file was
"ok" with every row holding an accent rejected ("not UTF-8 text") and exit 0. Now the
separator is detected, a file in another encoding stops the run before anything is
written with the encoding it looks like and the two ways out (`--encoding`, `iconv`),
and the campaign's `max_rejected` bounds the rejected rows (exit 3, in validate too).

The real CLI runs `validate` and `run` over every file of tests/corpus/customers/
(its README.md says what each one is).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import AS_OF, read_manifest, run_cli, write_tree

CORPUS = Path(__file__).resolve().parent / "corpus" / "customers"
NAMES = {"C1": "José", "C2": "Zoë", "C3": "Françoise", "C4": "Ørjan", "C5": "Jürgen",
         "C6": "Ana"}
CITIES = {"C1": "A Coruña", "C4": "Tromsø", "C5": "München", "C6": "São Paulo"}
BIG = {"C1", "C3", "C5"}
CAMPAIGN = {
    "name": "garden-club", "template": "letter.html.j2", "subject": "Hello",
    "sender": "Garden Club <club@example.org>", "kind": "transactional",
    "segments": {"big": "lifetime_value >= 5000"},
    "slots": {"news": {"kind": "article", "count": 1}},
    "formats": ["html", "text", "eml"], "max_rejected": "10%",
}
TEMPLATE = ("<html lang=\"en\"><body><p>Dear {{ customer.first_name }} of "
            "{{ customer.city | default('-') }}</p>{% for a in news %}{{ a.html }}"
            "{% endfor %}</body></html>\n")
# file -> (rows, rejected, exit code of validate and run)
READABLE = {
    "excel-semicolon-bom.csv": (6, 0, 0),
    "semicolon.csv": (6, 0, 0),
    "excel-unicode-text.txt": (6, 0, 0),
    "tabs.tsv": (6, 0, 0),
    "pipes.csv": (6, 0, 0),
    "crlf.csv": (6, 0, 0),
    "quoted-newlines.csv": (12, 1, 0),
    "utf8-one-broken-row.csv": (6, 1, 3),
    "bom-crlf.jsonl": (6, 0, 0),
}


@pytest.fixture
def club(tmp_path: Path) -> Path:
    root = write_tree(tmp_path / "site", campaigns={
        "garden-club.yaml": CAMPAIGN,
        "garden-club-1252.yaml": CAMPAIGN | {"name": "garden-club-1252",
                                             "customers_encoding": "windows-1252"},
        "garden-club-plain.yaml": {k: v for k, v in CAMPAIGN.items() if k != "max_rejected"}
        | {"name": "garden-club-plain"}},
        templates={"letter.html.j2": TEMPLATE},
        articles={"roses.md": {"title": "Roses", "body": "Prune them now.\n"}})
    shutil.copytree(CORPUS, root / "data", ignore=shutil.ignore_patterns("*.py", "*.md"))
    return root


def edition(root: Path, *args: Any) -> tuple[int, str, str]:
    return run_cli(*args, cwd=root)


def check_run(root: Path, out: Path, rows: int, rejected: int) -> list[dict[str, Any]]:
    manifest = read_manifest(out)
    assert len(manifest) == rows
    statuses = Counter(m["status"] for m in manifest)
    assert statuses["rejected"] == rejected and statuses["rendered"] == rows - rejected
    for row in manifest:
        if row["status"] == "rendered" and row["customer_id"] in NAMES:
            cid = row["customer_id"]
            # lifetime_value >= 5000, written 6200,50 in the `;` files: a number there too
            assert ("big" in row["segments"]) == (cid in BIG), row
            html = (out / row["files"]["html"]).read_text(encoding="utf-8")
            city = CITIES.get(cid, "")
            assert f"Dear {NAMES[cid]} of {city}" in html, html
    return manifest


@pytest.mark.parametrize("name", sorted(READABLE))
def test_validate_and_run_read_each_messy_file(club: Path, tmp_path: Path, name: str) -> None:
    rows, rejected, code = READABLE[name]
    got, stdout, stderr = edition(club, "validate", "campaigns/garden-club.yaml",
                                  "--customers", f"data/{name}")
    assert got == code, stdout + stderr
    assert f"ok: {rows} customer rows, {rejected} would be rejected" in stdout, stdout
    out = tmp_path / "run"
    got, stdout, stderr = edition(club, "run", "campaigns/garden-club.yaml", "--customers",
                                  f"data/{name}", "--out", out, "--as-of", AS_OF)
    assert got == code, stdout + stderr
    assert "Traceback" not in stderr
    manifest = check_run(club, out, rows, rejected)
    if code == 3:  # over max_rejected: the reason, in both commands' words
        assert "more than the campaign allows (max_rejected: 0)" in stderr, stderr
        assert "city: not UTF-8 text" in stderr, stderr
        (bad,) = [m for m in manifest if m["status"] == "rejected"]
        assert bad["customer_id"] == "C6"
        assert bad["reason"] == "city: byte 0xe3 is not UTF-8 text"


def test_a_windows_1252_file_says_what_it_is_and_the_way_out(club: Path,
                                                             tmp_path: Path) -> None:
    """Every row has an accent here: all six are rejected ("not UTF-8 text"), each with
    its reason, and both commands end with exit 3 saying what the file is."""
    out = tmp_path / "run"
    for args in (("validate", "campaigns/garden-club-plain.yaml"),
                 ("run", "campaigns/garden-club-plain.yaml", "--out", out, "--as-of", AS_OF)):
        code, stdout, stderr = edition(club, *args, "--customers",
                                       "data/excel-windows-1252.csv")
        assert code == 3, stdout + stderr
        assert "Traceback" not in stderr
        message = stderr.replace("\n", " ")
        assert "data/excel-windows-1252.csv: the customer file is not UTF-8 text" in message
        assert "line 2 has byte 0xe9" in message and "Jos\\xe9" in message
        assert "It looks like WINDOWS-1252, which reads that as “" in message
        assert "José" in message
        assert "--encoding windows-1252" in message
        assert ("iconv -f WINDOWS-1252 -t UTF-8 data/excel-windows-1252.csv > "
                "data/excel-windows-1252.utf8.csv") in message
    manifest = read_manifest(out)
    assert [(m["customer_id"], m["status"]) for m in manifest] == [
        (cid, "rejected") for cid in NAMES]
    assert manifest[0]["reason"] == "first_name: byte 0xe9 is not UTF-8 text"
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "It looks like WINDOWS-1252" in report and "iconv -f WINDOWS-1252" in report


def test_encoding_reads_it_from_the_cli_and_from_the_campaign(club: Path,
                                                              tmp_path: Path) -> None:
    customers = ("--customers", "data/excel-windows-1252.csv")
    code, stdout, stderr = edition(club, "validate", "campaigns/garden-club.yaml", *customers,
                                   "--encoding", "windows-1252")
    assert code == 0 and "ok: 6 customer rows, 0 would be rejected" in stdout, stderr
    for n, campaign, extra in ((1, "garden-club", ("--encoding", "windows-1252")),
                               (2, "garden-club-1252", ())):
        out = tmp_path / f"run{n}"
        code, _, stderr = edition(club, "run", f"campaigns/{campaign}.yaml", *customers,
                                  *extra, "--out", out, "--as-of", AS_OF)
        assert code == 0, stderr
        check_run(club, out, 6, 0)
        run = json.loads((out / "run.json").read_text(encoding="utf-8"))
        assert run["status"] == "finished"
        assert "windows-1252" in (out / "report.md").read_text(encoding="utf-8")
    code, stdout, stderr = edition(club, "preview", "campaigns/garden-club.yaml", *customers,
                                   "--encoding", "windows-1252", "--customer", "C4",
                                   "--format", "html")
    assert code == 0 and "Dear Ørjan of Tromsø" in stdout, stdout + stderr
    code, stdout, stderr = edition(club, "versions", "campaigns/garden-club.yaml", *customers,
                                   "--encoding", "cp1252")
    assert code == 0 and "6" in stdout, stdout + stderr


def test_utf8_read_as_windows_1252_and_unknown_encodings_are_refused(club: Path) -> None:
    code, _, stderr = edition(club, "validate", "campaigns/garden-club.yaml", "--customers",
                              "data/semicolon.csv", "--encoding", "windows-1252")
    assert code == 2, stderr
    assert "the customer file is UTF-8 text, but it would be read as windows-1252" in stderr
    assert "JosÃ©" in stderr
    code, _, stderr = edition(club, "validate", "campaigns/garden-club.yaml", "--customers",
                              "data/semicolon.csv", "--encoding", "klingon")
    assert code == 2 and "encoding 'klingon' is not one Python knows" in stderr, stderr
    (club / "campaigns" / "bad.yaml").write_text(
        json.dumps(CAMPAIGN | {"name": "bad", "customers_encoding": "klingon",
                               "max_rejected": "lots"}), encoding="utf-8")
    code, _, stderr = edition(club, "validate", "campaigns/bad.yaml")
    assert code == 2, stderr
    assert "customers_encoding" in stderr and "max_rejected 'lots' must be" in stderr, stderr


@pytest.mark.parametrize("name", ["members.xlsx", "members.xls"])
def test_a_workbook_given_as_the_customer_file_says_save_it_as_csv(club: Path,
                                                                  name: str) -> None:
    """A team's member list handed over as the workbook itself: "no id column" said
    nothing of why; now the way out, before anything is written."""
    import zipfile

    path = club / "data" / name
    if name.endswith(".xlsx"):   # a workbook is a ZIP of XML parts
        with zipfile.ZipFile(path, "w") as book:
            book.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    else:                        # the older format: an OLE compound document
        path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504)
    for verb in ("validate", "run"):
        code, stdout, stderr = edition(club, verb, "campaigns/garden-club.yaml", "--customers",
                                       f"data/{name}", *(["--out", "out/r"] if verb == "run"
                                                         else []))
        assert code == 2 and "Traceback" not in stderr, stdout + stderr
        assert (f"data/{name}: the customer file is a spreadsheet workbook (Excel or "
                f"OpenDocument), not CSV: save the sheet as CSV UTF-8") in stderr, stderr
    assert not (club / "out").exists()
