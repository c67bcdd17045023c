"""A module's own front matter keys (issue 17, finding 19).

The contract (design.md, "Template context"): a module's `meta` holds all its front
matter. So a team's own keys (`cta: Book my review`, `badge: new`) are accepted and
reach the template as `o.meta.cta`; only a key that looks like a misspelt known one
(`valid_untill`) is worth a warning, with its line and the key it most likely meant.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edition.modules import parse_module


@pytest.mark.parametrize(("key", "meant"), [
    ("valid_untill", "valid_until"), ("segment", "segments"), ("intrests", "interests"),
    ("Title", "title"), ("prioirty", "priority"), ("locale", "locales"), ("kidn", "kind"),
    ("cta", None), ("author_url", None), ("image_alt", None), ("badge", None),
    ("summary_text", None), ("tags2", None), ("reading_time", None), ("season", None),
])
def test_which_keys_read_as_typos(key: str, meant: str | None, tmp_path: Path) -> None:
    from edition.config import FrontMatter, near_miss

    assert near_miss(key, list(FrontMatter.model_fields)) == meant
    module = tmp_path / "articles" / "x.md"
    module.parent.mkdir()
    module.write_text(f"---\n{key}: something\n---\nBody.\n", encoding="utf-8")
    parsed, errors = parse_module(module, tmp_path)
    assert errors == [] and parsed is not None
    assert parsed.meta[key] == "something"
    assert bool(parsed.notes) == (meant is not None), parsed.notes
