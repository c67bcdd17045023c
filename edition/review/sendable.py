"""Can a run's e-mail go to customers as it is? Its unsubscribe links and its mailing.

`run --send` refuses marketing e-mail without `unsubscribe_url` (the messages would
carry no List-Unsubscribe header and an empty link in the body) or without
EDITION_UNSUBSCRIBE_SECRET (the links would carry the placeholder token
`unsigned-preview`, which the unsubscribe server answers with 400). A dry run renders
them anyway, so that a team can look at its editions before the campaign is complete;
`edition.render.unsubscribe.send_blockers` says so up front, and `MessageCheck` reads
the approved .eml files themselves — the bytes that would leave — so that `edition
approve` and `edition send` refuse such a run as `run --send` does, whatever the
campaign file says by then.

`MessageCheck` also reads the mailing each message names in its Feedback-ID: a send
must record in the ledger the mailing its approved messages carry, not another one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edition.render.list_headers import feedback_field, read_feedback_id
from edition.render.unsubscribe import (
    _UNSIGNED,
    NO_URL,
    InvalidToken,
    UnsubscribeSecretError,
    secrets_from_env,
    token_of,
    verify,
)

if TYPE_CHECKING:
    pass

UNSIGNED = (f"the unsubscribe links are unsigned (token={_UNSIGNED}: "
            f"EDITION_UNSUBSCRIBE_SECRET was not set when the run rendered), and the "
            f"unsubscribe server refuses them")
SHOWN = 5   # file names given as examples in a refusal

# Only two headers are needed from each message. A regular expression over the header
# block reads them in 13 us a message; email's BytesHeaderParser took 57 us (compat32)
# and 960 us (policy.default) on the same .eml files: 0.6 s instead of 2.9 s or 48 s
# for an approval of 50,000 messages.
_HEADERS = re.compile(rb"^(list-unsubscribe|feedback-id)[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)",
                      re.IGNORECASE | re.MULTILINE)
_FOLD = re.compile(r"\r?\n[ \t]+")
_LINK = re.compile(r"<([^<>]*)>")


def header_block(message: bytes) -> bytes:
    """The headers of a message: everything before its first empty line."""
    for blank in (b"\r\n\r\n", b"\n\n"):
        end = message.find(blank)
        if end >= 0:
            return message[:end + 1]
    return message


@dataclass
class MessageCheck:
    """What the approved .eml files say about their unsubscribe links and their mailing.

    `kind` is the campaign's, for a message without a Feedback-ID to say it; `secrets`,
    when given, must verify every token (a link signed with another secret is refused
    by the unsubscribe server as surely as an unsigned one).
    """

    campaign: str = ""
    kind: str = "marketing"
    secrets: tuple[bytes, ...] | None = None
    messages: int = 0
    marketing: int = 0
    no_link: list[str] = field(default_factory=list)
    unsigned: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)    # tokens that do not verify
    mailings: Counter[str] = field(default_factory=Counter)   # Feedback-ID mailing -> n

    @classmethod
    def here(cls, campaign: str, kind: str = "marketing",
             environ: Mapping[str, str] | None = None) -> MessageCheck:
        """A check that also verifies tokens when EDITION_UNSUBSCRIBE_SECRET is set here."""
        try:
            secrets: tuple[bytes, ...] | None = secrets_from_env(environ)
        except UnsubscribeSecretError:
            secrets = None
        return cls(campaign=campaign, kind=kind, secrets=secrets)

    def add(self, name: str, message: bytes) -> None:
        """Read one approved message (`name`: its path in the run folder)."""
        self.messages += 1
        found: dict[str, str] = {}
        for match in _HEADERS.finditer(header_block(message)):
            value = match.group(2).decode("utf-8", "replace")
            found.setdefault(match.group(1).decode("ascii").lower(), _FOLD.sub(" ", value))
        feedback = read_feedback_id(found.get("feedback-id", ""))
        if feedback is not None:
            self.mailings[feedback[1]] += 1
        if (feedback[2] if feedback is not None else self.kind) == "transactional":
            return
        self.marketing += 1
        links = _LINK.findall(found.get("list-unsubscribe", ""))
        tokens = [token_of(link.strip()) for link in links]
        if not links:
            self.no_link.append(name)
        elif any(token == _UNSIGNED for token in tokens):
            self.unsigned.append(name)
        elif self.secrets is not None and not all(self._verifies(t) for t in tokens):
            self.foreign.append(name)

    def _verifies(self, token: str | None) -> bool:
        if token is None or self.secrets is None:
            return False
        try:
            subscriber = verify(token, self.secrets)
        except InvalidToken:
            return False
        return not self.campaign or subscriber.campaign == self.campaign

    def problems(self) -> list[str]:
        """Why these messages must not be sent (empty: their links work)."""
        found = []
        if self.no_link:
            found.append(f"{len(self.no_link):,} marketing message(s) have no "
                         f"List-Unsubscribe link ({_names(self.no_link)}): {NO_URL}; set "
                         f"it and run again")
        if self.unsigned:
            found.append(f"{len(self.unsigned):,} marketing message(s) carry unsigned "
                         f"unsubscribe links ({_names(self.unsigned)}): {UNSIGNED}; set "
                         f"EDITION_UNSUBSCRIBE_SECRET and run again")
        if self.foreign:
            found.append(f"{len(self.foreign):,} marketing message(s) carry unsubscribe "
                         f"tokens that EDITION_UNSUBSCRIBE_SECRET here does not verify "
                         f"({_names(self.foreign)}): the unsubscribe server would refuse "
                         f"them; run again with the secret the server uses")
        return found

    def mailing_problem(self, mailing: str) -> str | None:
        """Why a send recorded as `mailing` would not match what its messages say."""
        other = {m: n for m, n in self.mailings.items() if m != feedback_field(mailing)}
        if not other:
            return None
        named = ", ".join(f"{m} ({n:,})" for m, n in sorted(other.items()))
        return (f"the approved messages name mailing {named} in their Feedback-ID, but this "
                f"send would be recorded as mailing {mailing}; send it as the approved "
                f"mailing, or make a dry run with --mailing {mailing}, approve it and send "
                f"that")


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN:,} more" if len(names) > SHOWN else "")


__all__ = ["MessageCheck", "header_block"]
