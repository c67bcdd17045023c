"""`edition preferences export|import`: the preference center's records for the CRM and
for GDPR access requests (edition/feedback/preferences.py, preference_files.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.console import err, user_errors
from edition.errors import UsageError

if TYPE_CHECKING:
    from edition.store.database import Database

app = typer.Typer(help="Customers' choices and consent records (the preference center).",
                  no_args_is_help=True, add_completion=False)

STORE_HELP = ("The house store: a file or a database URL (default: EDITION_STORE, else the "
              "campaign's suppression.store, else out/suppression.sqlite under --root)")


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="preferences")


def _campaign_name(campaign: str) -> str:
    """The campaign a file names (`campaigns/x.yaml`, as the other verbs take it), or the
    name as given."""
    if not campaign.endswith((".yaml", ".yml")):
        return campaign
    from edition.content.yamlfile import load_yaml
    from edition.errors import EditionError

    try:
        data = load_yaml(Path(campaign).read_text(encoding="utf-8"), campaign)
    except (OSError, UnicodeDecodeError, EditionError):
        return campaign   # not a readable campaign file: "no campaign called …" says so
    return str(data.get("name") or Path(campaign).stem) if isinstance(data, dict) else campaign


def _database(root: str, store: str | None, campaign: str = "") -> Database:
    from edition.store.database import Database, store_location_by_name

    content = Path(root).resolve()
    if store:
        location = store if "://" in store else str(Path(store).expanduser().resolve())
    else:
        location = store_location_by_name(content, campaign)
    return Database(location, content)


@app.command("export")
def export(
    customer: Annotated[str | None, typer.Option(
        help="One customer's consent records, as JSON (a GDPR access request)")] = None,
    campaign: Annotated[str | None, typer.Option(
        help="Only this campaign's choices (the CSV export)")] = None,
    root: Annotated[str, typer.Option(help="Content root (the folder with campaigns/)")] = ".",
    store: Annotated[str | None, typer.Option(help=STORE_HELP)] = None,
) -> None:
    """With --customer: that customer's consent records as a JSON list (time, change,
    form and text version, source). Without: every current choice as CSV for the CRM."""
    with user_errors():
        from edition.feedback.preference_files import export_csv
        from edition.feedback.preferences import export as consent_of
        from edition.feedback.preferences import offer_for

        campaign = _campaign_name(campaign) if campaign else campaign
        with _database(root, store, campaign or "") as database:
            if customer is not None:
                records = consent_of(database, customer)
                sys.stdout.write(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
            else:
                content = Path(root).resolve()
                offers: dict[str, tuple[str, ...]] = {}

                def topics(name: str) -> tuple[str, ...]:
                    # a campaign's topics, to tell "every topic switched off"
                    if name not in offers:
                        offer = offer_for(content, name)
                        offers[name] = offer.topics if offer is not None else ()
                    return offers[name]

                sys.stdout.write(export_csv(database, campaign, topics))


@app.command("import")
def import_(
    campaign: Annotated[str, typer.Argument(
        help="The campaign the choices are for: its name or its file (campaigns/x.yaml)")],
    file: Annotated[Path, typer.Argument(help="A CSV of id and choices (see `export`)")],
    root: Annotated[str, typer.Option(help="Content root (the folder with campaigns/)")] = ".",
    store: Annotated[str | None, typer.Option(help=STORE_HELP)] = None,
) -> None:
    """Import the CRM's choices (source crm), each change with its consent record. Bad
    rows are listed with their line and reason and the rest go in (exit 3 if any)."""
    with user_errors():
        from edition.feedback.preference_files import import_csv
        from edition.feedback.preferences import BadChoice, offer_for

        content = Path(root).resolve()
        campaign = _campaign_name(campaign)
        offer = offer_for(content, campaign)
        if offer is None:
            raise UsageError(f"no campaign called {campaign!r} under {content / 'campaigns'}")
        if not file.is_file():
            raise UsageError(f"{file} is not a file")
        with _database(root, store, campaign) as database:
            try:
                result = import_csv(database, file, campaign=campaign, offer=offer)
            except BadChoice as exc:
                raise UsageError(f"{file}: {exc}") from None
        for line, reason in result.rejected:
            err.print(f"{file}:{line}: rejected: {reason}", markup=False)
        for line, reason in result.kept_out:
            err.print(f"{file}:{line}: {reason}", markup=False)
        err.print(f"{result.changed:,} customer(s) changed, {result.unchanged:,} unchanged, "
                  f"{len(result.rejected):,} rejected", markup=False)
        if result.rejected:
            raise typer.Exit(3)
