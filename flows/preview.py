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

from edition.errors import UsageError
from edition.naming import artifact_key
from edition.review.preview import preview_customer as preview
from edition.review.preview_page import selection_markdown, write_page
from edition.run.roots import locate
from edition.run.run_page import output_link
from flows.ending import refused
from flows.form import AsOf, Text, run_date


def check_preview_parameters(campaign: str, customer_id: str, customers: str | None = None,
                             as_of: dt.date | str | None = None,
                             ) -> tuple[Path, str | None, dt.date | None]:
    """Refuse bad parameters before any work: (campaign file, customers, run date)."""
    path, location, _, problems = locate(campaign, customers)
    if not str(customer_id or "").strip():
        problems.append("customer_id is empty")
    date, wrong = run_date(as_of)
    problems += wrong
    if problems or path is None:
        raise UsageError("; ".join(problems))
    return path, location, date


@flow(name="preview-customer", log_prints=True)
def preview_customer(
    campaign: str,
    customer_id: str,
    customers: Text = "",
    as_of: AsOf = "",
    format: Literal["html", "text", "eml"] = "html",
) -> dict[str, Any]:
    """Select and render one customer's edition; nothing is sent.

    Args:
        campaign: The campaign: its name, or its file (campaigns/NAME.yaml).
        customer_id: The customer's id in the customer file.
        customers: Customers instead of the campaign's: a CSV, JSONL or Parquet file, or a
            `postgresql://` URL (`postgresql://host/db?table=customers`); a relative path
            is looked up from the content root, then from the working directory. Empty
            means the campaign's.
        as_of: The run date (YYYY-MM-DD); empty means today.
        format: Which rendering to show inline next to the HTML page.
    """
    logger = get_run_logger()
    try:
        path, customers, as_of = check_preview_parameters(campaign, customer_id, customers,
                                                          as_of)
    except UsageError as exc:
        logger.error("refused before any work: %s", exc)
        return refused(exc)

    result = preview(str(path), customer_id, customers=customers, fmt=format, as_of=as_of)
    name = result.campaign
    page = write_page(result)
    if page is not None:
        create_link_artifact(output_link(page), link_text=f"HTML edition of {customer_id}",
                             key=artifact_key("preview-html", name),
                             description=f"{name}: the rendered edition of {customer_id}")
    body = selection_markdown(result, name, output_link(page) if page else None)
    if result.document and format in ("text", "eml"):
        body += ("\n\n## The edition (" + format + ")\n\n```text\n"
                 + result.document.decode("utf-8", "replace") + "\n```")
    create_markdown_artifact(body, key=artifact_key("preview", f"{name}-{customer_id}"),
                             description=f"Selection with reasons for {customer_id}")
    logger.info(result.explanation)
    return result.as_dict() | {"campaign": str(path), "explanation": result.explanation,
                               "page": str(page) if page else None}
