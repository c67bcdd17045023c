"""What a run is, decided once: its campaign, where its customers come from, its folder,
its delivery target and channel, its mailing and run date, and its clock.

`RunContext` is built by the lifecycle (edition/run/lifecycle.py) after it has chosen
the mailing and looked at the run folder, before anything is written; from then on
every part of the run reads it, and nothing changes it. The helpers below answer the
same questions for callers that have only options (preview, census, validate).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edition.audience.customers import count_rows
from edition.audience.sources import CustomerSource, customer_source
from edition.content.campaign import Campaign
from edition.errors import RunError, UsageError
from edition.render.plan import Plan
from edition.run.folder import is_remote
from edition.run.options import RunOptions
from edition.send.delivery import EMAIL_CHANNEL
from edition.send.targets import channel_of
from edition.send.targets import needs_email as target_needs_email

Source = CustomerSource   # where customers come from


def customers_file(options: RunOptions, campaign: Campaign) -> Source:
    """`--customers`, else the campaign's `customers`: a CSV/JSONL/Parquet file (relative
    to the content root) or a SQL source (`postgresql://…` + query)."""
    encoding = options.encoding or campaign.customers_encoding
    if options.customers:
        return customer_source(options.customers, from_campaign=False, encoding=encoding)
    if campaign.customers:
        return customer_source(campaign.customers, root=campaign.root, encoding=encoding)
    raise UsageError("no customer file: pass --customers or set `customers` in the campaign")


def source_name(source: Source) -> str:
    """How a source is shown and compared (a SQL source without its password)."""
    return source.label


def out_folder(options: RunOptions, campaign: Campaign) -> Path | str:
    """`--out` (a folder, or s3://bucket/prefix), else out/<campaign>/<run id>/ under the
    content root."""
    if options.out:
        return options.out if is_remote(options.out) else Path(options.out)
    return campaign.root / "out" / campaign.name / str(options.run_id)


def local_folder(options: RunOptions, campaign: Campaign) -> Path:
    """The run's folder on this machine: the run folder, or for a run folder in object
    storage out/<campaign>/<run id>/ (a `local` target's outbox goes there)."""
    out = out_folder(options, campaign)
    return out if isinstance(out, Path) else campaign.root / "out" / campaign.name / str(
        options.run_id)


def target_of(options: RunOptions, campaign: Campaign) -> str:
    return options.to or campaign.target


def need_email(options: RunOptions, plan: Plan) -> bool:
    """Rows without an address are rejected when the run makes or sends e-mail."""
    return "eml" in plan.formats or (options.send and
                                     target_needs_email(target_of(options, plan.campaign)))


def makes_email(options: RunOptions, plan: Plan) -> bool:
    """Does this run write .eml files or send by e-mail?"""
    return "eml" in plan.formats or (
        options.send and channel_of(target_of(options, plan.campaign)) == EMAIL_CHANNEL)


def estimate_rows(source: Source, options: RunOptions) -> int:
    """About how many rows a run over this file reads (for progress bars, pool sizing)."""
    try:
        total = count_rows(source)
    except (OSError, RunError):
        return 0
    return min(total, options.limit) if options.limit is not None else total


def options_key(options: RunOptions) -> str:
    """A short name for everything these options decide, for the per-process caches of
    the workers (edition/run/workers.py): equal options, equal key."""
    return hashlib.sha256(options.model_dump_json().encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class RunContext:
    """One run, as decided before its first batch (see the module docstring).

    `options` are the run's final options: the run id, clock, mailing and run date are
    filled in, and `out` is the run folder. `source` stays in the main process (a SQL
    source's URL may hold a password): a worker gets the context without it.
    """

    options: RunOptions
    campaign: str               # the campaign's name (its file: options.campaign)
    root: Path                  # the campaign's content root
    location: str               # the run folder: a path, or s3://bucket/prefix
    target: str                 # where a send delivers
    channel: str                # the ledger's channel for that target
    mailing: str                # which issue of the campaign (a dry run's: the send it would be)
    as_of: dt.date              # the run date modules are chosen for
    started: dt.datetime        # the run's clock (the messages' Date)
    source: Source | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, options: RunOptions, campaign: Campaign, *, mailing: str, as_of: dt.date,
           started: dt.datetime, source: Source | None = None) -> RunContext:
        """The context of a run of `campaign` with these decisions made."""
        location = str(out_folder(options, campaign))
        target = target_of(options, campaign)
        final = options.replace(mailing=mailing, as_of=as_of, started=started, out=location)
        return cls(final, campaign.name, campaign.root, location, target, channel_of(target),
                   mailing, as_of, started, source)

    @property
    def run_id(self) -> str:
        return str(self.options.run_id)

    @property
    def sending(self) -> bool:
        return self.options.send

    @property
    def remote(self) -> bool:
        return is_remote(self.location)

    @property
    def key(self) -> str:
        return options_key(self.options)

    def dry(self) -> RunContext:
        """The same run sending nothing (what preflight looks at)."""
        return dataclasses.replace(self, options=self.options.replace(
            send=False, resend_unknown=False, new_mailing=False))

    def __getstate__(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "source"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in (state | {"source": None}).items():
            object.__setattr__(self, name, value)


__all__ = ["RunContext", "Source", "customers_file", "estimate_rows", "local_folder",
           "makes_email", "need_email", "options_key", "out_folder", "source_name",
           "target_of"]
