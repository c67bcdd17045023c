"""`schedule: {cron: "0 8 * * MON", timezone: Europe/London}`: when a campaign runs by itself.

`edition serve` makes the campaign a Prefect deployment with this schedule; the cron
expression and the time zone are checked when the campaign is loaded, so a typo is a
campaign error with its line, not a deployment that never fires.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from cronsim import CronSim, CronSimError
from pydantic import field_validator

from edition.content.campaign_values import Strict
from edition.content.errors_at_lines import fail


class Schedule(Strict):
    """A cron expression and the time zone it is read in."""

    cron: str
    timezone: str = "UTC"

    @field_validator("cron", mode="before")
    @classmethod
    def _cron(cls, value: object) -> str:
        text = str(value)
        try:
            CronSim(text, dt.datetime(2026, 1, 1))
        except (CronSimError, ValueError) as exc:
            raise fail(f"schedule.cron {text!r} is not a valid cron expression: {exc}") from None
        return text

    @field_validator("timezone", mode="before")
    @classmethod
    def _timezone(cls, value: object) -> str:
        text = str(value)
        try:
            zoneinfo.ZoneInfo(text)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise fail(f"schedule.timezone {text!r} is not a known time zone "
                       f"(e.g. Europe/London)") from None
        return text


def scheduled_mailing(schedule: Schedule | None, when: dt.datetime) -> str:
    """A scheduled run's mailing: the date it was scheduled for, in the schedule's time
    zone (UTC without one): a run due Monday 00:30 in London is Monday's, not Sunday's."""
    return when.astimezone(zoneinfo.ZoneInfo(schedule.timezone if schedule else "UTC")
                           ).date().isoformat()


def schedule_block(value: object) -> object:
    if value is not None and not isinstance(value, dict):
        raise fail("schedule must be {cron: \"0 8 * * MON\", timezone: Europe/London}")
    return value
