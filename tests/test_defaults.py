"""Defaults for what a minimal campaign or module leaves out."""

from __future__ import annotations

from pathlib import Path

from edition.content.campaign import load_campaign
from edition.content.modules import parse_module


def test_module_title_defaults_to_first_heading_then_id(tmp_path: Path) -> None:
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "with-heading.md").write_text("---\npriority: 1\n---\n# Winter walks\n\nText.\n")
    (folder / "baby-checklist.md").write_text("---\n---\nJust text.\n")
    with_heading, problems = parse_module(folder / "with-heading.md", tmp_path)
    plain, more = parse_module(folder / "baby-checklist.md", tmp_path)
    assert not problems and not more
    assert with_heading is not None and with_heading.title == "Winter walks"
    assert plain is not None and plain.title == "Baby checklist"


def test_campaign_without_formats_or_sender_makes_html_and_text(tmp_path: Path) -> None:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.html.j2").write_text("<p>{{ customer.id }}</p>")
    file = tmp_path / "campaigns" / "minimal.yaml"
    file.write_text("name: minimal\ntemplate: t.html.j2\nslots:\n  a: {kind: article, count: 1}\n")
    assert load_campaign(file).formats == ("html", "text")
    file.write_text(file.read_text() + "sender: \"A <a@b.example>\"\nsubject: Hi\n")
    assert load_campaign(file).formats == ("html", "text", "eml")
