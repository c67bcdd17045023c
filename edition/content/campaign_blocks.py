"""The nested blocks of a campaign file: its slots, PDF settings and suppression.

Each is a Strict model (unknown keys are errors, with "did you mean"); the campaign
(content/campaign.py) holds them as it holds its plain values. `delivery:` is in
content/delivery_settings.py, `schedule:` in content/schedule.py, `limits:` in
content/limits.py.
"""

from __future__ import annotations

from pydantic import PrivateAttr, field_validator

from edition.content.campaign_values import HOSTNAME, PAGE_SIZES, PASSWORD_IN_URL, Strict
from edition.content.errors_at_lines import fail


class Slot(Strict):
    """A place in the template that takes `count` modules of one `kind`
    (`articles: {kind: article, count: 3}`); its name is the key it is written under."""

    kind: str
    count: int = 1
    rank: str = "rules"   # or learn: Thompson sampling on click rates (audience/learning.py)
    _name: str = PrivateAttr(default="")

    @property
    def name(self) -> str:
        return self._name

    def named(self, name: str) -> Slot:
        slot = self.model_copy()
        slot._name = name
        return slot

    @field_validator("rank", mode="before")
    @classmethod
    def _rank(cls, value: object) -> str:
        if value not in ("rules", "learn"):
            raise fail(f"rank {value!r} must be rules (priority, interests, id) or learn "
                       f"(the modules' click rates, with tracking:)")
        return str(value)

    @field_validator("count", mode="before")
    @classmethod
    def _count(cls, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail("count must be a whole number of at least 1")
        return value


class Pdf(Strict):
    """`pdf: {page_size: A4|Letter, allow_hosts: [cdn.acme.example]}`.

    A PDF render reads files under the content root only; `allow_hosts` names the hosts
    whose https URLs (images, stylesheets, fonts) it may fetch too."""

    page_size: str = "A4"
    allow_hosts: tuple[str, ...] = ()

    @field_validator("page_size", mode="before")
    @classmethod
    def _size(cls, value: object) -> str:
        if value not in PAGE_SIZES:
            raise fail(f"pdf.page_size {value!r} must be A4 or Letter")
        return str(value)

    @field_validator("allow_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise fail("pdf.allow_hosts must be a list of host names, e.g. [cdn.acme.example]")
        hosts = []
        for entry in value:
            text = str(entry).strip().lower()
            host, _, port = text.partition(":")
            if "://" in text or "/" in text:
                raise fail(f"pdf.allow_hosts: {entry!r} is a URL; name the host only, e.g. "
                           f"cdn.acme.example (https is implied)")
            if not HOSTNAME.match(host) or (port and not port.isdigit()):
                raise fail(f"pdf.allow_hosts: {entry!r} is not a host name like "
                           f"cdn.acme.example")
            hosts.append(text)
        return tuple(hosts)



class SuppressionColumns(Strict):
    """`columns: {unsubscribed: unsubscribed, email_status: email_status}`: customer columns
    that suppress a row. Absent, both are looked for under these names; given, exactly
    the named ones are (`columns: {}` turns them off)."""

    unsubscribed: str | None = "unsubscribed"   # true / yes / 1 / a date: unsubscribed
    email_status: str | None = "email_status"   # bounced or complained: never mailed


class SoftBounces(Strict):
    """`soft_bounces: {count: 3, days: 14}`: a soft bounce suppresses once `count` of them
    came back within `days` days (edition events ingest; hard bounces suppress at once)."""

    count: int = 3
    days: int = 14

    @field_validator("count", "days", mode="after")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise fail("suppression.soft_bounces: count and days must be 1 or more")
        return value


class Suppression(Strict):
    """`suppression: [data/unsubscribed.csv]`, or the long form with the store and columns.

    ```yaml
    suppression:
      lists: [data/unsubscribed.csv, data/crm-optouts.txt]
      store: out/suppression.sqlite      # or postgresql://edition@db.internal/edition
      columns: {unsubscribed: opted_out, email_status: email_status}
      soft_bounces: {count: 3, days: 14}   # suppress after 3 soft bounces within 14 days
      complaints_min_sent: 1000   # a complaint rate refuses a send only from 1,000 sent
    ```
    """

    lists: tuple[str, ...] = ()
    store: str | None = None
    columns: SuppressionColumns = SuppressionColumns()
    soft_bounces: SoftBounces = SoftBounces()
    # a mailing's complaint rate refuses the next send (edition.run.sender_health) only
    # when it counted this many sent: 1 complaint in 40 is 2.5 % and says little
    complaints_min_sent: int = 1000

    @field_validator("complaints_min_sent", mode="after")
    @classmethod
    def _min_sent(cls, value: int) -> int:
        if value < 0:
            raise fail("suppression.complaints_min_sent must be 0 or more")
        return value

    @field_validator("lists", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                                  for v in value):
            raise fail("suppression lists must be file paths, e.g. [data/unsubscribed.csv]")
        return tuple(v.strip() for v in value)

    @field_validator("store", mode="before")
    @classmethod
    def _store(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise fail("suppression.store must be a file path or a database URL")
        if PASSWORD_IN_URL.match(value):
            raise fail("suppression.store must not hold a password; set "
                       "EDITION_SUPPRESSION_STORE or PGPASSWORD / ~/.pgpass instead")
        if "://" in value and not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise fail(f"suppression.store {value!r}: use a file path, sqlite:///path or "
                       f"postgresql://user@host/db")
        return value.strip()

    @field_validator("columns", mode="before")
    @classmethod
    def _columns(cls, value: object) -> object:
        if value is None:
            return {"unsubscribed": None, "email_status": None}
        if not isinstance(value, dict):
            raise fail("suppression.columns must map unsubscribed / email_status to column "
                       "names, e.g. {unsubscribed: opted_out}")
        return {"unsubscribed": None, "email_status": None} | dict(value)


def suppression_block(value: object) -> object:
    """The short forms: a path, or a list of paths."""
    if value is None:
        return {}
    if isinstance(value, str | list):
        return {"lists": value}
    if not isinstance(value, dict):
        raise fail("suppression must be a list of files (e.g. [data/unsubscribed.csv]) or "
                   "a mapping with lists, store and columns")
    return value
