"""Preflight of PDF editions: every image, stylesheet or font a version's page names
must be one the render may fetch (a file under the content root, https from a host in
`pdf.allow_hosts`, a data: URI) and can fetch. A problem names the module that asks
for it (or the template, or print.css), the URL and why, and is an error: the run
stops before anything is rendered (exit 2), since every customer of the version would
get a PDF without it, and a refused URL is a mistake or an attack.

The render itself is confined by the same fetcher (renderers.pdf.fetcher), whatever
this finds.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edition.content.campaign import Campaign
from edition.errors import ContentError

if TYPE_CHECKING:
    from renderers.pdf import ResourceCheck

_checks: dict[tuple[Any, ...], ResourceCheck] = {}


def _check(campaign: Campaign) -> tuple[ResourceCheck, dict[str, Any]]:
    from edition.render.encoding import pdf_options
    from renderers.pdf import ContentFetcher, ResourceCheck  # WeasyPrint only for PDF

    options = pdf_options(campaign)
    key = (options["root"], options["allow_hosts"])
    if key not in _checks:   # one per process: each URL is tried once per run
        _checks.clear()
        _checks[key] = ResourceCheck(ContentFetcher(options["root"],
                                                    allow_hosts=options["allow_hosts"]))
    return _checks[key], options


def page_problems(campaign: Campaign, modules: list[Any], page: str) -> list[ContentError]:
    """What a version's page (its modules ``modules``) asks the PDF render to fetch and
    it may not, or cannot."""
    check, options = _check(campaign)
    errors = []
    for problem in check.problems(page, options["base_url"]):
        asked = problem.written if problem.written == problem.url else (
            f"{problem.written} ({problem.url})")
        module = _asking(modules, problem.written)
        if module is not None:
            where, file, line = (f"module {module.id!r}", module.source,
                                 _line(campaign.root / module.source, problem.written))
        else:
            file = f"templates/{campaign.template}"
            where, line = "the template", _line(campaign.root / file, problem.written)
        errors.append(ContentError(f"PDF: {where} asks for {asked}: {problem.reason}",
                                   file, line))
    return errors


def stylesheet_problems(campaign: Campaign) -> list[ContentError]:
    """What the print stylesheet (templates/print.css or ours) names and the render may
    not, or cannot, fetch."""
    from renderers.pdf import print_rules

    check, options = _check(campaign)
    source, text = print_rules(options["templates_dir"])
    shown = (f"templates/{source.name}" if source.parent.resolve() ==
             Path(options["templates_dir"]).resolve() else str(source))
    return [ContentError(f"PDF: the print stylesheet asks for {problem.url}: {problem.reason}",
                         shown, _line(source, problem.written))
            for problem in check.problems("<!doctype html><title>print</title>",
                                          options["base_url"], text)]


def _asking(modules: list[Any], written: str) -> Any:
    for module in modules:
        body = module.html
        if written in body or html.escape(written) in body:
            return module
    return None


def _line(path: Path, written: str) -> int | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for needle in (written, html.escape(written)):
        at = text.find(needle)
        if at >= 0:
            return text.count("\n", 0, at) + 1
    return None
