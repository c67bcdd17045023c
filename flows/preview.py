"""Prefect flow `preview-customer`: one customer's edition as a dry run, with reasons."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from edition.preview import preview_customer as preview
from edition.run import Plan, RunOptions
from flows.campaign import artifact_key


@flow(name="preview-customer", log_prints=True)
def preview_customer(
    campaign: str,
    customer_id: str,
    customers: str | None = None,
    as_of: dt.date | None = None,
    format: Literal["html", "text", "eml"] = "html",
) -> dict[str, Any]:
    """Select and render one customer's edition; nothing is sent."""
    logger = get_run_logger()
    result = preview(campaign, customer_id, customers=customers, fmt=format, as_of=as_of)
    plan = Plan.load(RunOptions(campaign=campaign).resolved())
    key = artifact_key("preview", f"{plan.campaign.name}-{customer_id}")
    body = [f"# Preview: {plan.campaign.name} for `{customer_id}`", "",
            "```text", result.explanation, "```"]
    if result.html:
        folder = plan.campaign.root / "out" / "previews" / plan.campaign.name
        folder.mkdir(parents=True, exist_ok=True)
        from edition.output import safe_name

        page = folder / f"{safe_name(customer_id)}.html"
        page.write_text(result.html, encoding="utf-8")
        result_path = page.resolve()
        body += ["", f"Rendered edition: [{result_path.name}]({result_path.as_uri()})"]
        create_link_artifact(result_path.as_uri(), link_text=f"HTML edition of {customer_id}",
                             key=artifact_key("preview-html", f"{plan.campaign.name}"))
    if result.document and format == "text":
        body += ["", "```text", result.document.decode("utf-8", "replace"), "```"]
    create_markdown_artifact("\n".join(body), key=key,
                             description=f"Selection with reasons for {customer_id}")
    logger.info(result.explanation)
    return result.as_dict() | {"path": str(Path(campaign))}
