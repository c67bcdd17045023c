"""Prefect flow `preview-customer`: one customer's edition as a dry run, with reasons.

The run shows, as artifacts: the selection slot by slot with the reason for every chosen
and skipped module (markdown, the same words `edition preview` prints), and the rendered
HTML edition as a link (over `edition serve`'s loopback HTTP server, else file://).
Nothing is sent; the only file written is the preview page under out/previews/.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from edition.databases import is_database_url
from edition.errors import UsageError
from edition.naming import artifact_key, safe_name
from edition.preview import PreviewResult
from edition.preview import preview_customer as preview
from flows.campaign import output_link


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def selection_markdown(result: PreviewResult, campaign: str, page: Path | None) -> str:
    """The selection with reasons, as markdown (tables, then the CLI's own words)."""
    out = [f"# Preview: {campaign} for `{result.customer_id}`", ""]
    out.append(f"- status: **{result.status}**" + (f" — {result.reason}" if result.reason
                                                   else ""))
    out.append(f"- segments: {', '.join(f'`{s}`' for s in result.segments) or '(none)'}")
    for segment, problem in result.missing.items():
        out.append(f"- rule `{segment}` is false: missing field `{problem}`")
    if result.version:
        out.append(f"- version: `{result.version}`")
    if page is not None:
        out.append(f"- rendered edition: [{page.name}]({output_link(page)})")
    for slot in result.slots:
        out += ["", f"## {slot['slot']} ({slot['kind']}, takes {slot['count']})", ""]
        out += ["| | module | title | why |", "| --- | --- | --- | --- |"]
        for c in slot["chosen"]:
            out.append(f"| {c['rank']} | `{c['id']}` | {_cell(c['title'])} | "
                       f"chosen: {_cell(c['reason'])} |")
        for s in slot["skipped"]:
            out.append(f"| – | `{s['id']}` | | skipped: {_cell(s['reason'])} |")
        if slot.get("other_campaigns"):
            out.append(f"| – | | | {slot['other_campaigns']} modules belong to other "
                       f"campaigns |")
        if not slot["chosen"] and not slot["skipped"]:
            out.append("| | | | no eligible module |")
    out += ["", "## As `edition preview` prints it", "", "```text", result.explanation, "```"]
    return "\n".join(out)


@flow(name="preview-customer", log_prints=True)
def preview_customer(
    campaign: str,
    customer_id: str,
    customers: str | None = None,
    as_of: dt.date | None = None,
    format: Literal["html", "text", "eml"] = "html",
) -> dict[str, Any]:
    """Select and render one customer's edition; nothing is sent.

    Args:
        campaign: The campaign file (campaigns/NAME.yaml).
        customer_id: The customer's id in the customer file.
        customers: Customer file (CSV or JSONL) instead of the campaign's; a relative path
            is looked up from the content root, then from the working directory.
        as_of: The run date; empty means today.
        format: Which rendering to show inline next to the HTML page.
    """
    from edition.campaign import find_root

    logger = get_run_logger()
    path = Path(campaign).expanduser()
    problems = []
    if not path.is_file():
        problems.append(f"campaign file not found: {campaign!r} (looked for {path.resolve()})")
    if not str(customer_id or "").strip():
        problems.append("customer_id is empty")
    if customers and path.is_file() and not is_database_url(customers):
        candidate = Path(customers).expanduser()
        if not candidate.is_absolute():
            in_root = find_root(path) / candidate  # relative to the content root first
            candidate = in_root if in_root.exists() or not candidate.exists() else candidate
        if not candidate.is_file():
            problems.append(f"customer file not found: {customers!r}")
        customers = str(candidate.resolve())
    if problems:
        logger.error("refused before any work: %s", "; ".join(problems))
        raise UsageError("; ".join(problems))

    result = preview(str(path), customer_id, customers=customers, fmt=format, as_of=as_of)
    name = result.campaign
    page = None
    if result.html and result.root is not None:
        folder = result.root / "out" / "previews" / name
        folder.mkdir(parents=True, exist_ok=True)
        page = (folder / f"{safe_name(customer_id)}.html").resolve()
        temp = page.with_name(f".{page.name}.tmp")
        temp.write_text(result.html, encoding="utf-8")
        temp.replace(page)
        create_link_artifact(output_link(page), link_text=f"HTML edition of {customer_id}",
                             key=artifact_key("preview-html", name),
                             description=f"{name}: the rendered edition of {customer_id}")
    body = selection_markdown(result, name, page)
    if result.document and format in ("text", "eml"):
        body += ("\n\n## The edition (" + format + ")\n\n```text\n"
                 + result.document.decode("utf-8", "replace") + "\n```")
    create_markdown_artifact(body, key=artifact_key("preview", f"{name}-{customer_id}"),
                             description=f"Selection with reasons for {customer_id}")
    logger.info(result.explanation)
    return result.as_dict() | {"campaign": str(path), "explanation": result.explanation,
                               "page": str(page) if page else None}
