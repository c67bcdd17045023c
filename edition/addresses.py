"""E-mail addresses: checked with email-validator, one rule for customers, senders and targets.

email-validator is the authority on what an address is. A strict dot-atom regex answers
first for the plain ASCII addresses that nearly every row holds: it accepts only what
email-validator accepts too (tests/test_addresses.py checks that on generated
addresses), and costs ~1 µs where email-validator costs ~27 µs, which matters when one
process reads a million rows. Everything else (non-ASCII, odd forms, mistakes) goes to
email-validator, which also words the reason.

An international domain is written in its ASCII (IDNA) form, so only an address whose
local part is not ASCII needs a server that offers SMTPUTF8.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from email.utils import getaddresses, parseaddr

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}$")
# top-level names no mail can go to (email-validator refuses them); `test` is allowed,
# for test data (email-validator's test_environment)
_SPECIAL = {"arpa", "invalid", "local", "localhost", "onion"}
# every kind of line break and the C0/C1 controls: never part of a name in a header
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")

ADDRESS_HASH_HEX = 32   # address hashes are 128 bits (tokens, the suppression store)


class AddressError(ValueError):
    """Not one usable e-mail address; the message says why."""


def normalize(address: str) -> str:
    """The address as it is written into headers and the SMTP envelope, or AddressError."""
    text = address.strip()
    if (len(text) <= 254 and _PLAIN.match(text) and len(text.partition("@")[0]) <= 64
            and text.rpartition(".")[2].lower() not in _SPECIAL):
        local, _, domain = text.partition("@")
        return f"{local}@{domain.lower()}"
    if not text:
        raise AddressError("empty address")
    # imported here: ~0.1 s of start-up that a file of plain addresses never needs
    from email_validator import EmailNotValidError, validate_email

    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=True,
                                 test_environment=True)
    except EmailNotValidError as exc:
        raise AddressError(str(exc)) from None
    return checked.ascii_email or unicodedata.normalize("NFC", checked.normalized)


def clean_name(name: str) -> str:
    """A display name fit for a header: controls and line breaks become spaces."""
    return _CONTROLS.sub(" ", name).strip(" ")


def parse_mailbox(value: str) -> tuple[str, str]:
    """`Acme News <news@acme.example>` → (name, normalized address); AddressError if not one."""
    if "\r" in value or "\n" in value:
        raise AddressError("a line break in an address")
    found = getaddresses([value])
    if len(found) != 1 or not found[0][1]:
        raise AddressError("not exactly one address")
    name, address = parseaddr(value)
    return clean_name(name), normalize(address)


def address_hash(address: str | None) -> str:
    """The 32-hex-digit hash the token and the suppression store keep instead of an address.

    Case-insensitive (`Ann@X.example` and `ann@x.example` are one person's) and
    normalized as the customer file normalizes it; "" for no address.
    """
    if not address or not str(address).strip():
        return ""
    return hashlib.sha256(b"edition address\0" + match_address(str(address)).encode(
        "utf-8", "surrogatepass")).hexdigest()[:ADDRESS_HASH_HEX]


def match_address(address: str) -> str:
    """The form addresses are compared in: normalized, then case-folded."""
    try:
        return normalize(address).casefold()
    except AddressError:
        return address.strip().casefold()
