"""A preview as a page: the selection with reasons in Markdown (the preview-customer
flow's artifact), and the rendered HTML edition written where the output is served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edition.markdown_text import code, fenced, text
from edition.naming import safe_name
from edition.review.preview import PreviewResult


def _cell(value: Any) -> str:
    return text(" ".join(str(value).split())).replace("|", "\\|")


def _code_cell(value: Any) -> str:
    return code(value).replace("|", "\\|")


def selection_markdown(result: PreviewResult, campaign: str, page: str | None) -> str:
    """The selection with reasons, as markdown (tables, then the CLI's own words); `page`
    links the rendered edition."""
    out = [f"# Preview: {text(campaign)} for {code(result.customer_id)}", ""]
    out.append(f"- status: **{result.status}**" + (f" — {text(result.reason)}"
                                                   if result.reason else ""))
    out.append(f"- segments: {', '.join(map(code, result.segments)) or '(none)'}")
    for segment, problem in result.missing.items():
        out.append(f"- rule {code(segment)} is false: missing field {code(problem)}")
    if result.version:
        out.append(f"- version: {code(result.version)}")
    if page is not None:
        out.append(f"- rendered edition: [{page.rsplit('/', 1)[-1]}]({page})")
    for slot in result.slots:
        out += ["", f"## {slot['slot']} ({slot['kind']}, takes {slot['count']})", ""]
        out += ["| | module | title | why |", "| --- | --- | --- | --- |"]
        for c in slot["chosen"]:
            out.append(f"| {c['rank']} | {_code_cell(c['id'])} | {_cell(c['title'])} | "
                       f"chosen: {_cell(c['reason'])} |")
        for s in slot["skipped"]:
            out.append(f"| – | {_code_cell(s['id'])} | | skipped: {_cell(s['reason'])} |")
        if slot.get("other_campaigns"):
            out.append(f"| – | | | {slot['other_campaigns']} modules belong to other "
                       f"campaigns |")
        if not slot["chosen"] and not slot["skipped"]:
            out.append("| | | | no eligible module |")
    out += ["", "## As `edition preview` prints it", "", fenced(result.explanation)]
    return "\n".join(out)


def write_page(result: PreviewResult) -> Path | None:
    """The HTML edition in the content root's out/previews/CAMPAIGN/ (written whole:
    a reader never sees half a page), or None without one."""
    if not result.html or result.root is None:
        return None
    folder = result.root / "out" / "previews" / result.campaign
    folder.mkdir(parents=True, exist_ok=True)
    page = (folder / f"{safe_name(result.customer_id)}.html").resolve()
    temp = page.with_name(f".{page.name}.tmp")
    temp.write_text(result.html, encoding="utf-8")
    temp.replace(page)
    return page
