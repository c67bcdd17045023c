"""Replayable runs (issue 21, item 5): run.json records what a run was made of, and
`edition replay RUN_DIR --out DIR` makes it again byte for byte or names what changed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

# tests/ is not a package: pytest puts it on sys.path
from cadence_content import house, people
from conftest import read_manifest


def messy_customers(root: Path) -> None:
    """A spreadsheet's export: BOM, semicolons, an empty first name, a huge id, accents."""
    lines = ["id;email;first_name;city",
             "1;one@example.com;Zoë;Köln",
             "98765432109876543210;big@example.com;;",
             "c-3;three@example.com;\"O'Brien; Jr\";<b>Paris</b>"]
    (root / "data" / "customers.csv").write_bytes(
        b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")


def test_a_run_replays_byte_for_byte_then_names_what_changed(
        content_tree: Callable, cli: Callable, tmp_path: Path) -> None:
    root = house(content_tree, people(1))
    messy_customers(root)
    code, out, err = cli("run", "campaigns/news-a.yaml", "--out", "out/run", cwd=root)
    assert code == 0, out + err
    info = json.loads((root / "out" / "run" / "run.json").read_text(encoding="utf-8"))
    recorded = info["replay"]
    assert set(recorded["content"]) >= {"campaigns/news-a.yaml", "templates/page.html.j2",
                                        "articles/hello.md"}
    assert recorded["customers"]["sha256"] and recorded["code"]["sha256"]

    # from another folder: the run's own paths are recorded
    code, out, err = cli("replay", root / "out" / "run", "--out", tmp_path / "again",
                         cwd=tmp_path)
    assert code == 0, out + err
    assert "byte-identical (9 of 9 files identical)" in out
    assert json.loads((tmp_path / "again" / "replay.json").read_text())["byte_identical"]

    # an edited module: the files that changed, and why
    article = root / "articles" / "hello.md"
    article.write_text(article.read_text(encoding="utf-8").replace("week", "month"),
                       encoding="utf-8")
    code, out, err = cli("replay", root / "out" / "run", "--out", tmp_path / "edited",
                         cwd=tmp_path)
    assert code == 1, out + err
    assert "Traceback" not in err
    assert "DIFFERENT" in out and "articles/hello.md was edited" in out
    assert "html/1.html differs" in out and "text/1.txt differs" in out
    assert "the customer data changed" not in out

    # a second replay into a folder that holds one: refused, nothing overwritten
    code, out, err = cli("replay", root / "out" / "run", "--out", tmp_path / "edited",
                         cwd=tmp_path)
    assert code == 2 and "not empty" in err
    code, out, err = cli("replay", root / "out" / "run", "--out", root / "out" / "run" / "r",
                         cwd=tmp_path)
    assert code == 2 and "outside the run's" in err
    assert not (root / "out" / "run" / "r").exists()


def test_replay_keeps_the_runs_cadence_decisions(content_tree: Callable, cli: Callable,
                                                 tmp_path: Path) -> None:
    root = house(content_tree, people(40), edition_yaml=(
        "frequency_cap: {max: 1, days: 7}\nglobal_holdout: {percent: 20}\n"))
    code, out, err = cli("run", "campaigns/news-a.yaml", "--send", "--yes", "--out",
                         "out/a", cwd=root)
    assert code == 0, out + err
    rows = read_manifest(root / "out" / "a")
    assert {r["reason_code"] for r in rows} >= {"holdout", None}
    # the house sends more since: today's history would cap everyone, the replay does not
    code, out, err = cli("run", "campaigns/news-b.yaml", "--send", "--yes", "--out",
                         "out/b", "--new-mailing", cwd=root)
    assert code == 0, out + err
    (root / "edition.yaml").write_text("frequency_cap: {max: 1, days: 7}\n", encoding="utf-8")
    code, out, err = cli("replay", "out/a", "--out", tmp_path / "again", cwd=root)
    assert code == 0, out + err
    sent = sum(1 for r in rows if r["status"] == "sent")
    assert f"byte-identical ({sent * 3} of {sent * 3} files identical)" in out
    assert "edition.yaml was edited" in out
