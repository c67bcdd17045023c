"""What a finished run shows beside its report (edition/run/run_page.py): links to its
first editions, whatever their names, and its versions as rows, from a folder we wrote
by hand (names with spaces and Markdown, a damaged versions.json)."""

from __future__ import annotations

import json
from pathlib import Path

from edition.run.run_page import MAX_ROWS, report_with_samples, version_rows
from edition.run.summary import RunSummary


def summary_of(folder: Path | str) -> RunSummary:
    return RunSummary(run_id="r1", out_dir=str(folder), counts={"rendered": 2}, customers=2,
                      versions=1, seconds=0.1, report="# Run report: x\n")


def test_the_report_links_the_first_editions_and_the_folder(tmp_path: Path) -> None:
    (tmp_path / "text").mkdir()
    for name in ("c 3 [x].txt", "c1.txt", "c2.txt", "c4.txt"):
        (tmp_path / "text" / name).write_text("hi", encoding="utf-8")
    report = report_with_samples(summary_of(tmp_path), lambda p: p.as_uri())
    assert report.startswith("# Run report: x\n")
    linked = [line for line in report.splitlines() if line.startswith("- [text/")]
    assert len(linked) == 3 and "c4.txt" not in report
    assert (tmp_path / "text" / "c 3 [x].txt").as_uri() in report
    assert f"All files: [{tmp_path.name}]({tmp_path.as_uri()})" in report


def test_no_links_for_a_folder_without_editions_or_elsewhere(tmp_path: Path) -> None:
    assert report_with_samples(summary_of(tmp_path), str) == "# Run report: x\n"
    assert report_with_samples(summary_of("s3://bucket/runs/r1"), str) == "# Run report: x\n"


def test_versions_become_rows_and_a_damaged_file_none(tmp_path: Path) -> None:
    versions = [{"id": f"v{i}", "customers": i, "locale": "de-CH", "segments": [],
                 "modules": {"hero": ["a", "b"], "offers": []}} for i in range(MAX_ROWS + 7)]
    (tmp_path / "versions.json").write_text(json.dumps({"versions": versions}),
                                            encoding="utf-8")
    total, rows = version_rows(str(tmp_path))
    assert total == MAX_ROWS + 7 and len(rows) == MAX_ROWS
    assert rows[1] == {"version": "v1", "customers": 1, "locale": "de-CH", "segments": "-",
                       "hero": "a, b", "offers": ""}
    (tmp_path / "versions.json").write_text("{not json", encoding="utf-8")
    assert version_rows(str(tmp_path)) == (0, [])
    assert version_rows(str(tmp_path / "missing")) == (0, [])
