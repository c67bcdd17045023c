"""A run's options: everything that defines one run, checked once, whoever starts it
(the CLI's flags, the flow's form, Python); frozen and picklable for the workers."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edition.content.campaign_values import encoding as _encoding
from edition.content.errors_at_lines import fail
from edition.content.plugins import has_credentials
from edition.databases import masked
from edition.naming import FORMATS, new_run_id

DEFAULT_BATCH = 500
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}\Z")
MAILING = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}\Z")


def parse_run_date(value: dt.date | str | None) -> dt.date | None:
    """A run date: a date, ISO text (YYYY-MM-DD), or empty; ValueError in words."""
    if not isinstance(value, str):
        return value
    try:
        return dt.date.fromisoformat(value.strip()) if value.strip() else None
    except ValueError:
        raise ValueError(f"as_of {value!r} is not a date (YYYY-MM-DD)") from None


class RunOptions(BaseModel):
    """Everything that defines a run; small, frozen and picklable, so workers rebuild a Plan.

    The CLI's flags and the flow's form both end up here: one place checks them. The
    descriptions are the options' help, declared once: the flow's form (flows/form.py)
    takes its fields' help from here by name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign: str
    customers: str | None = None
    out: str | None = None
    formats: tuple[str, ...] | None = Field(default=None, description=(
        "What to make for each customer; empty means the campaign's formats."))
    as_of: dt.date | None = Field(default=None, description=(
        "The run date (YYYY-MM-DD) modules' valid_from/valid_until are checked against; "
        "empty means today."))
    limit: int | None = Field(default=None, description=(
        "Only the first N customer rows; 0 means every row."))
    send: bool = False
    to: str | None = Field(default=None, description=(
        "Delivery target instead of the campaign's (local, s3://bucket/prefix, "
        "smtp://host:port, ses); empty means the campaign's."))
    resend_unknown: bool = Field(default=False, description=(
        "When sending: send again to customers whose earlier delivery outcome is unknown."))
    batch_size: int = DEFAULT_BATCH
    run_id: str | None = Field(default=None, description="Run id; empty makes one from the time.")
    started: dt.datetime | None = Field(default=None, description=(
        "The run's clock (the e-mails' Date header); set it with run_id to reproduce a run "
        "byte for byte; ISO 8601 (2026-11-02T08:00:00+00:00); empty means now."))
    mailing: str | None = Field(default=None, description=(
        "Which issue of the campaign a send is; empty means the scheduled date (in the "
        "campaign's time zone) for a scheduled run, else the run date. A customer is sent "
        "at most once per mailing, whatever reruns or crashes."))
    new_mailing: bool = Field(default=False, description=(
        "When sending: start this mailing even though an earlier one is unfinished."))
    suppression: tuple[str, ...] = ()  # --suppression FILE (more lists, besides the campaign's)
    encoding: str | None = None      # --encoding of a CSV/JSONL customer file
    force: bool = False              # --force: send although the last mailing's complaint
                                     # rate crossed 0.3 % (edition.run.sender_health)

    @field_validator("formats", mode="before")
    @classmethod
    def _formats(cls, value: Any) -> Any:
        if value is None:
            return None
        names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
        names = [n for n in names if n]
        bad = [n for n in names if n not in FORMATS]
        if bad or not names:
            raise fail(f"formats {','.join(map(str, names)) or '(none)'}: choose from "
                       f"{', '.join(FORMATS)}")
        return tuple(f for f in FORMATS if f in names)

    @field_validator("as_of", mode="before")
    @classmethod
    def _as_of(cls, value: Any) -> Any:
        try:
            return parse_run_date(value)
        except ValueError as exc:
            raise fail(str(exc)) from None

    @field_validator("started", mode="before")
    @classmethod
    def _started(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("limit")
    @classmethod
    def _limit(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise fail(f"limit must be 0 or more, not {value}")
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, value: int) -> int:
        if value < 1:
            raise fail(f"batch size must be at least 1, not {value}")
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        if value is not None and has_credentials(value):
            raise fail("--to must not hold credentials; set them in the environment "
                       "(EDITION_SMTP_USERNAME/PASSWORD, AWS profiles)")
        return value

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str | None) -> str | None:
        if value is not None and not RUN_ID.match(value):
            raise fail(f"run id {value!r} may only use letters, digits, '.', '_' and '-'")
        return value

    @field_validator("mailing")
    @classmethod
    def _mailing(cls, value: str | None) -> str | None:
        if value is not None and not MAILING.match(value):
            raise fail(f"mailing {value!r}: use letters, digits, '.', '_', ':' and '-' "
                       f"(e.g. 2026-11-23 or spring-2027)")
        return value

    @field_validator("encoding", mode="before")
    @classmethod
    def _encoding(cls, value: Any) -> Any:
        return _encoding(value, "--encoding")

    @field_validator("suppression", mode="before")
    @classmethod
    def _suppression(cls, value: Any) -> Any:
        names = [value] if isinstance(value, str) else list(value or ())
        missing = [str(n) for n in names if not Path(str(n)).is_file()]
        if missing:
            raise fail(f"suppression list not found: {', '.join(missing)}")
        return tuple(str(n) for n in names)

    @model_validator(mode="after")
    def _sending(self) -> RunOptions:
        if self.resend_unknown and not self.send:
            raise fail("resend_unknown only makes sense when sending")
        if self.new_mailing and not self.send:
            raise fail("new_mailing only makes sense when sending")
        return self

    @classmethod
    def build(cls, **values: Any) -> RunOptions:
        """Checked options; every problem in one UsageError (the CLI's and the form's words)."""
        from edition.errors import UsageError

        try:
            return cls(**values)
        except ValidationError as exc:
            problems = [str(e["msg"]) if e["type"] == "edition" else
                        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            raise UsageError("; ".join(problems)) from None

    def replace(self, **changes: Any) -> RunOptions:
        return self.model_copy(update=changes)

    def recorded(self) -> dict[str, Any]:
        """The options as run.json records them: each URL masked (a customers URL may
        hold a password; edition.databases.masked hides it). Read back, a masked
        password means "from the environment" (PGPASSWORD, ~/.pgpass)."""
        document = self.model_dump(mode="json")
        for name in ("customers", "out", "to"):
            if document.get(name):
                document[name] = masked(document[name])
        return document

    def resolved(self) -> RunOptions:
        """Fill in the defaults that must be the same in every worker."""
        started = self.started or dt.datetime.now(dt.UTC).replace(microsecond=0)
        # as_of stays empty when not given: a send may resume an unfinished mailing,
        # whose run date it then takes (edition.run decides)
        return self.replace(started=started, run_id=self.run_id or new_run_id(started),
                            campaign=str(Path(self.campaign).resolve()),
                            # workers may start elsewhere: lists named from here, found there
                            suppression=tuple(str(Path(p).resolve()) for p in self.suppression))
