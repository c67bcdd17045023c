"""One rule for every name edition derives from a value: files, object keys, slugs.

The run folder, the local outbox and S3 keys all name a customer's file the same way, so
`html/C000042.html` is the same customer wherever it lands.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import unicodedata

FORMATS = ("html", "text", "eml", "pdf")
EXTENSIONS = {"html": "html", "text": "txt", "eml": "eml", "pdf": "pdf"}
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "text": "text/plain; charset=utf-8",
    "eml": "message/rfc822",
    "pdf": "application/pdf",
}
_CLEAN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}\Z")
_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?\Z", re.I)
_LOWER = re.compile(r"[a-z]")
_LOOKS_HASHED = re.compile(r".*-[0-9a-f]{10}$", re.I)


def safe_name(value: str) -> str:
    """A file name for a value (a customer id) that cannot leave its folder or collide.

    Plain ids without lowercase letters (`C000042`) are used as they are; any other id is
    slugged and gets a hash of the real id, so `A` and `a`, or `a/b` and `a_b`, never
    share a file — also on case-insensitive file systems (macOS, Windows), where a plain
    `a` next to a plain `A` would overwrite it. A plain id that looks like a hashed name
    is hashed too, so no crafted id can take another id's name.
    """
    if (_CLEAN.match(value) and not _LOWER.search(value) and not _RESERVED.match(value)
            and ".." not in value and not value.endswith(".")
            and not _LOOKS_HASHED.match(value)):
        return value
    ascii_id = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_id.lower()).strip("-")[:48] or "customer"
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{slug}-{digest}"


def relative_path(fmt: str, customer_id: str) -> str:
    """Where a customer's file of one format goes, relative to the run folder (or prefix)."""
    return f"{fmt}/{safe_name(customer_id)}.{EXTENSIONS[fmt]}"


def slug(value: str, limit: int = 64) -> str:
    """Lowercase letters, digits and dashes (Prefect artifact keys, deployment names)."""
    text = "".join(c if c.isalnum() and c.isascii() else "-" for c in value.lower())
    return re.sub(r"-{2,}", "-", text).strip("-")[:limit] or "x"


def artifact_key(prefix: str, name: str) -> str:
    """A Prefect artifact key: `prefix-name`, lowercase letters, digits and dashes."""
    return slug(f"{prefix}-{name}")


def new_run_id(started: dt.datetime | None = None) -> str:
    """`20261123-080000-1a2b`: the start time, and a suffix so two runs never share it."""
    started = started or dt.datetime.now(dt.UTC)
    return f"{started:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
