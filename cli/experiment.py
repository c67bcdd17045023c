"""`edition experiment report CAMPAIGN [--json]`: each variant's sends, clicks, rate with a
95 % interval and P(best), the holdout, and the verdict of the campaign's fixed rule."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.console import user_errors


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Experiments: reports and verdicts.", no_args_is_help=True)
    group.command("report")(report)
    app.add_typer(group, name="experiment")


def report(
    campaign: Annotated[str, typer.Argument(
        help="The campaign: its file (campaigns/x.yaml) or its name")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """The campaign's experiment: variants, clicks and the verdict (winner, keep testing,
    no difference) by the rule the campaign fixed before sending."""
    with user_errors():
        from edition.content.campaign import load_campaign
        from edition.content.campaign_files import campaign_file
        from edition.errors import UsageError
        from edition.feedback.experiments import report as experiment_report
        from edition.feedback.experiments import report_text

        file = campaign_file(campaign, Path.cwd())
        if file is None:
            raise UsageError(f"no campaign {campaign!r}: give its file (campaigns/x.yaml) "
                             f"or its name")
        data = experiment_report(load_campaign(file))
        if as_json:
            sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(report_text(data))
