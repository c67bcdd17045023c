"""A scheduled run's mailing is the date it was due in the campaign's time zone
(edition/content/schedule.py: scheduled_mailing), whatever the clock of the machine
that runs it: the flow names the mailing by it when none is given."""

from __future__ import annotations

import datetime as dt

from edition.content.schedule import Schedule, scheduled_mailing


def test_the_mailing_is_the_due_date_in_the_schedules_time_zone() -> None:
    due = dt.datetime(2026, 11, 29, 23, 30, tzinfo=dt.UTC)   # Monday 00:30 in Berlin
    berlin = Schedule(cron="30 0 * * MON", timezone="Europe/Berlin")
    assert scheduled_mailing(berlin, due) == "2026-11-30"
    assert scheduled_mailing(Schedule(cron="30 23 * * SUN"), due) == "2026-11-29"
    assert scheduled_mailing(None, due) == "2026-11-29"   # no schedule: UTC
    tokyo = Schedule(cron="0 9 * * *", timezone="Asia/Tokyo")
    assert scheduled_mailing(tokyo, due.astimezone(dt.timezone(dt.timedelta(hours=-8)))
                             ) == "2026-11-30"   # the same instant, from another clock
