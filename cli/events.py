"""`edition events ingest SOURCE...`: bounces and complaints into the store, and the
suppressions they call for."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.console import err, out, user_errors

events_app = typer.Typer(help="Bounces, complaints and other delivery events.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")


@events_app.command("ingest")
def ingest(
    sources: Annotated[list[str], typer.Argument(
        help="Maildir folders, mbox files, .eml files, JSON files of SES/SNS notifications, "
             "folders of such files, or sqs://QUEUE[?region=R]")],
    root: Annotated[str, typer.Option(help="Content root (the folder with campaigns/)")] = ".",
    store: Annotated[str | None, typer.Option(
        help="The house store: a file or a database URL (default: EDITION_STORE, else "
             "the store of the campaign each event names, else out/suppression.sqlite "
             "under ROOT)")] = None,
) -> None:
    """Read returned mail (RFC 3464 bounces, RFC 5965 complaints) and SES notifications,
    keep each event once, and suppress: hard bounces and complaints at once, soft
    bounces after the campaign's suppression.soft_bounces (3 within 14 days)."""
    with user_errors():
        from edition.feedback.events import Ingester, ingest_sources
        from edition.feedback.events.ingest import HouseStores, soft_bounce_rules
        from edition.feedback.events.sent_messages import SentMessages
        from edition.render.unsubscribe import UnsubscribeSecretError, secrets_from_env

        content = Path(root).resolve()
        if store and "://" not in store:
            store = str(Path(store).expanduser().resolve())   # relative to where we start
        try:
            secrets = secrets_from_env()
        except UnsubscribeSecretError:
            secrets = ()
            err.print("note: EDITION_UNSUBSCRIBE_SECRET is not set: messages are matched by "
                      "SES's message id (SES events) or their recipient address only",
                      style="yellow", markup=False)
        rules = soft_bounce_rules(content)
        with HouseStores(content, store) as stores:
            ingester = Ingester(stores, rule_for=rules.get)
            result = ingest_sources(sources, ingester, secrets, SentMessages(content))
        for line in result.suppressed:
            out.print(f"suppressed {line}", markup=False)
        summary = ", ".join(f"{n} {what}" for what, n in sorted(result.counts.items())) or \
            "nothing found"
        out.print(summary, markup=False)
