"""`edition.yaml` at the content root: the house's settings, what spans campaigns.

```yaml
frequency_cap: {max: 3, days: 7}          # marketing messages per customer, every campaign
send_window: {start: "09:00", end: "20:00", timezone: Europe/London}
global_holdout: {percent: 5, salt: "acme-2027"}   # never get marketing (a control group)
priority: 5          # a campaign's default priority for the cap's slots (its own `priority:`)
```

`send_window.timezone` is for customers whose `timezone` field is empty or unknown
(default UTC). A campaign may override `frequency_cap` and `send_window` with its own
block, or turn either off with `off`. The file is checked like a campaign: every mistake
at once, each with file and line; a missing file means no house settings.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr, field_validator, model_validator

from edition.content.campaign_values import Strict
from edition.content.errors_at_lines import check, fail
from edition.content.yamlfile import LineDict, load_yaml
from edition.errors import ContentError, ContentErrors, collect

HOUSE_FILE = "edition.yaml"
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)\Z")
DEFAULT_SALT = "edition-global-holdout"


class Switchable(Strict):
    """A block a campaign may turn off (`frequency_cap: off`)."""

    _off: bool = PrivateAttr(default=False)

    @property
    def off(self) -> bool:
        return self._off

    @classmethod
    def turned_off(cls, **placeholder: Any) -> Any:
        block = cls.model_construct(**placeholder)
        block._off = True
        return block


class FrequencyCap(Switchable):
    """At most `max` marketing messages per customer in any `days` days."""

    max: int
    days: int

    @field_validator("max", "days", mode="before")
    @classmethod
    def _whole(cls, value: Any, info: Any) -> int:
        least = 0 if info.field_name == "max" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise fail(f"frequency_cap.{info.field_name} must be a whole number of at least "
                       f"{least}")
        if info.field_name == "days" and value > 366:
            raise fail("frequency_cap.days must be at most 366")
        return value

    def words(self) -> str:
        return f"{self.max} in {self.days} day{'s' if self.days != 1 else ''}"


def _clock(value: Any, key: str) -> dt.time:
    text = str(value).strip() if isinstance(value, str | int) else ""
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 09:00 as a sexagesimal number (540)
        text = f"{value // 60:02d}:{value % 60:02d}" if 0 <= value < 24 * 60 else ""
    match = _CLOCK.match(text)
    if not match:
        raise fail(f"send_window.{key} {value!r} must be a time of day HH:MM, e.g. \"09:00\"")
    return dt.time(int(match.group(1)), int(match.group(2)))


def known_zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The IANA time zone called `name`, or None (an empty, unknown or hostile value)."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


class SendWindow(Switchable):
    """Messages go out between `start` and `end` in the customer's time zone; an `end`
    before `start` is a window across midnight (22:00-06:00)."""

    start: dt.time
    end: dt.time
    timezone: str = "UTC"     # for customers without a usable `timezone` field

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: Any, info: Any) -> dt.time:
        return _clock(value, str(info.field_name))

    @field_validator("timezone", mode="before")
    @classmethod
    def _zone(cls, value: Any) -> str:
        if known_zone(str(value)) is None:
            raise fail(f"send_window.timezone {value!r} is not a known time zone "
                       f"(e.g. Europe/London)")
        return str(value)

    @model_validator(mode="after")
    def _not_empty(self) -> SendWindow:
        if self.start == self.end:
            raise fail("send_window start and end must differ (the window would be empty)")
        return self

    def words(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


class GlobalHoldout(Strict):
    """A share of all customers who never get marketing: the house's control group.

    Who is in it is a hash of the salt and the customer id, so it is the same customers
    in every campaign, run and machine; a new salt draws a new group."""

    percent: float
    salt: str = DEFAULT_SALT

    @field_validator("percent", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> float:
        if isinstance(value, str) and value.strip().endswith("%"):
            value = value.strip()[:-1]
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0
        if isinstance(value, bool) or not 0 <= number <= 50:
            raise fail(f"global_holdout.percent {value!r} must be a number from 0 to 50")
        return number

    @field_validator("salt", mode="before")
    @classmethod
    def _salt(cls, value: Any) -> str:
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
            raise fail("global_holdout.salt must be text")
        return str(value)


def priority_value(value: Any) -> int:
    """A campaign priority: a whole number from 0 to 1000 (higher wins the cap's slot)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
        raise fail(f"priority {value!r} must be a whole number from 0 to 1000 (a higher one "
                   f"wins a capped customer's slot)")
    return value


class House(Strict):
    """The house settings (edition.yaml); empty when the file is absent."""

    frequency_cap: FrequencyCap | None = None
    send_window: SendWindow | None = None
    global_holdout: GlobalHoldout | None = None
    priority: int = 0      # campaigns' default priority on a crowded day

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> int:
        return priority_value(value)

    @field_validator("frequency_cap", "send_window", "global_holdout", mode="before")
    @classmethod
    def _block(cls, value: Any, info: Any) -> Any:
        return block(value, str(info.field_name))


def block(value: Any, key: str) -> Any:
    """A settings block: a mapping, or `off` (None here: no such setting)."""
    if value is None or value is False:
        return None
    if not isinstance(value, dict):
        raise fail(f"{key} must be a mapping, e.g. {EXAMPLES[key]}, or off")
    return value


EXAMPLES = {"frequency_cap": "{max: 3, days: 7}",
            "send_window": "{start: \"09:00\", end: \"20:00\"}",
            "global_holdout": "{percent: 5}"}


def load_house(root: Path) -> House:
    """The content root's edition.yaml, checked (every mistake at once, with its line)."""
    path = Path(root) / HOUSE_FILE
    if not path.is_file():
        return House()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ContentError(f"{HOUSE_FILE} is not UTF-8 text: {exc}", HOUSE_FILE, 1) from None
    data = load_yaml(text, HOUSE_FILE)
    if data is None:
        return House()
    if not isinstance(data, LineDict):
        raise ContentError(f"{HOUSE_FILE} must be a mapping of keys, e.g. frequency_cap: "
                           f"{EXAMPLES['frequency_cap']}", HOUSE_FILE, 1)
    house, errors = check(House, data, HOUSE_FILE, salvage=False)
    collect(errors)
    assert house is not None   # no error, so validated
    return house


def override(value: Any, key: str) -> Any:
    """A campaign's own `frequency_cap:`/`send_window:`: a block, or `off` (a block that
    is off: none for this campaign, whatever the house says); absent (None): the house's.

    `off` is an instance, not False beside the block in a union: a wrong block's errors
    are then its own, not also "must be true or false"."""
    if value is None:
        return value
    if value is False:
        return OFF[key]
    if not isinstance(value, dict):
        raise fail(f"{key} must be a mapping, e.g. {EXAMPLES[key]}, or off (the house's "
                   f"{HOUSE_FILE} applies when it is absent)")
    return value


OFF = {"frequency_cap": FrequencyCap.turned_off(max=0, days=1),
       "send_window": SendWindow.turned_off(start=dt.time(0), end=dt.time(0, 1))}


def house_errors(root: Path) -> list[ContentError]:
    """edition.yaml's mistakes, for the campaign's own check (validate, preview and run
    stop on them like on a campaign's, before anything is rendered)."""
    try:
        load_house(root)
    except ContentErrors as exc:
        return list(exc.errors)
    except ContentError as exc:
        return [exc]
    return []
