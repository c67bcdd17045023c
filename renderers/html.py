"""HTML editions for email clients: the template's <style> inlined with css-inline."""

from __future__ import annotations

import css_inline

_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def inline(html: str) -> str:
    """Inline the document's <style> rules into style attributes."""
    return _INLINER.inline(html)
