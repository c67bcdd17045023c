"""A module's own front matter keys (issue 17, finding 19).

The contract (design.md, "Template context"): a module's `meta` holds all its front
matter. So a team's own keys (`cta: Book my review`, `badge: new`) are accepted and
reach the template as `o.meta.cta`; only a key that looks like a misspelt known one
(`valid_untill`) is worth a warning, with its line and the key it most likely meant.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from edition.content.modules import parse_module

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "corpus" / "garden-club"
CAMPAIGN = "campaigns/allotment-news.yaml"


@pytest.fixture
def garden(tmp_path: Path) -> Path:
    root = tmp_path / "garden-club"
    shutil.copytree(CORPUS, root)
    return root


def warnings_of(stdout: str) -> list[str]:
    return [line.removeprefix("warning: ") for line in stdout.splitlines()
            if line.startswith("warning: ")]


def test_a_modules_own_keys_are_accepted_and_reach_the_template(garden: Path, cli,
                                                                manifest_of) -> None:
    rc, stdout, stderr = cli("validate", CAMPAIGN, cwd=garden)
    assert rc == 0, stdout + stderr
    assert "front matter" not in stdout + stderr   # cta, cta_url, badge, season: no word
    rc, stdout, stderr = cli("run", CAMPAIGN, "--out", "out/r1", cwd=garden)
    rows = {r["customer_id"]: r for r in manifest_of(garden / "out" / "r1")}
    html = (garden / "out" / "r1" / rows["m001"]["files"]["html"]).read_text(encoding="utf-8")
    assert re.search(r'href="https://riverside-allotments\.example/review"[^>]*>Book my review'
                     r'</a>', html), html
    assert "Watch the demonstration" in html      # an article's own `cta`
    text = (garden / "out" / "r1" / rows["m001"]["files"]["text"]).read_text(encoding="utf-8")
    assert "Book my review: https://riverside-allotments.example/review" in text


def test_a_near_miss_of_a_known_key_is_a_warning_naming_the_key_it_meant(garden: Path,
                                                                          cli) -> None:
    offer = garden / "offers" / "plot-review.md"
    offer.write_text(offer.read_text(encoding="utf-8").replace(
        "valid_until: 2099-12-31", "valid_untill: 2099-12-31"), encoding="utf-8")
    line = offer.read_text(encoding="utf-8").splitlines().index(
        "valid_untill: 2099-12-31") + 1
    rc, stdout, stderr = cli("validate", CAMPAIGN, cwd=garden)
    assert rc == 0, stdout + stderr
    assert any(w.startswith(f"offers/plot-review.md:{line}: front matter key 'valid_untill': "
                            f"did you mean 'valid_until'?") for w in warnings_of(stdout)), stdout
    assert sum("valid_untill" in w for w in warnings_of(stdout)) == 1   # said once
    rc, stdout, stderr = cli("validate", CAMPAIGN, "--strict", cwd=garden)
    assert rc == 2, stdout + stderr
    # a run says it too, in its report
    rc, stdout, stderr = cli("run", CAMPAIGN, "--out", "out/r1", cwd=garden)
    report = (garden / "out" / "r1" / "report.md").read_text(encoding="utf-8")
    assert "valid_untill" in report and "valid_until" in report


@pytest.mark.parametrize(("key", "meant"), [
    ("valid_untill", "valid_until"), ("segment", "segments"), ("intrests", "interests"),
    ("Title", "title"), ("prioirty", "priority"), ("locale", "locales"), ("kidn", "kind"),
    ("cta", None), ("author_url", None), ("image_alt", None), ("badge", None),
    ("summary_text", None), ("tags2", None), ("reading_time", None), ("season", None),
])
def test_which_keys_read_as_typos(key: str, meant: str | None, tmp_path: Path) -> None:
    from edition.content.errors_at_lines import near_miss
    from edition.content.front_matter import FrontMatter

    assert near_miss(key, list(FrontMatter.model_fields)) == meant
    module = tmp_path / "articles" / "x.md"
    module.parent.mkdir()
    module.write_text(f"---\n{key}: something\n---\nBody.\n", encoding="utf-8")
    parsed, errors = parse_module(module, tmp_path)
    assert errors == [] and parsed is not None
    assert parsed.meta[key] == "something"
    assert bool(parsed.notes) == (meant is not None), parsed.notes
