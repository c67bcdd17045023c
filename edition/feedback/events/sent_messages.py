"""Which message an SES event is about, by the id SES gave it at send time.

The SES publisher keeps SES's MessageId of every message it sent in the send ledger
(`provider_id`, with the campaign, the customer and the mailing in the send key). An SES
event carries that id as `mail.messageId`, whether or not the configuration set includes
the original headers: looking it up is exact, where the recipient address alone matches
every customer with that address. Signed headers (X-Edition-Id, the List-Unsubscribe
token) are still read first; the id comes next; the address last.

The ledgers are those a run of each campaign under the content root uses (its
`delivery.ledger`, else EDITION_LEDGER_URL, else out/<campaign>/ledger.sqlite), read
through the ledger's own protocol, read-only, once, on the first event whose headers
name nobody; an id not found reads them again at most every `refresh` seconds (for
`edition web`, which runs while new mailings go out). A ledger that cannot be opened is
skipped: an ingest goes on with the address.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from edition.errors import EditionError
from edition.render.message_identity import Identity
from edition.send.ledger.records import KEY_JOIN

log = logging.getLogger("edition.events")


def _ledgers(root: Path) -> list[tuple[str, str | Path]]:
    """(campaign, ledger location) of every campaign file under `root`; only the
    `name` and `delivery.ledger` keys are read (a broken template must not stop this)."""
    from edition.content.yamlfile import load_yaml
    from edition.send.ledger.location import ledger_location

    found = []
    for file in sorted((root / "campaigns").glob("*.y*ml")):
        try:
            data = load_yaml(file.read_text(encoding="utf-8"), str(file))
        except (OSError, UnicodeDecodeError, EditionError):
            continue
        if not isinstance(data, dict):
            continue
        name = str(data.get("name") or file.stem)
        delivery = data.get("delivery")
        configured = delivery.get("ledger") if isinstance(delivery, dict) else None
        try:
            found.append((name, ledger_location(str(configured) if configured else None,
                                                root=root, campaign=name)))
        except EditionError:
            continue
    return found


class SentMessages:
    """provider message id -> Identity (campaign, mailing, customer); thread-safe."""

    def __init__(self, root: Path, *, refresh: float = 60.0):
        self.root = root
        self.refresh = refresh
        self._known: dict[str, Identity] = {}
        self._loaded: float | None = None
        self._lock = threading.Lock()

    def __call__(self, message_id: str) -> Identity | None:
        if not message_id:
            return None
        with self._lock:
            found = self._known.get(message_id)
            if found is None and (self._loaded is None
                                  or time.monotonic() - self._loaded >= self.refresh):
                self._load()
                found = self._known.get(message_id)
            return found

    def _load(self) -> None:
        from edition.send.ledger.location import open_ledger

        known: dict[str, Identity] = {}
        for campaign, location in _ledgers(self.root):
            if isinstance(location, Path) and not location.is_file():
                continue   # never sent: nothing to read (and no file to create)
            try:
                with open_ledger(location, exclusive=False, readonly=True) as ledger:
                    for entry in ledger.entries(campaign, ["sent"]):
                        if entry.provider_id:
                            mailing = entry.send_key.split(KEY_JOIN, 1)[0]
                            known[entry.provider_id] = Identity(campaign, mailing,
                                                                entry.customer_id)
            except (EditionError, OSError, sqlite3.Error) as exc:
                log.warning("could not read the send ledger of %s: %s", campaign, exc)
        self._known = known
        self._loaded = time.monotonic()


__all__ = ["SentMessages"]
