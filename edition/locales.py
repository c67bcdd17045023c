"""Locales: a customer's `locale` as a BCP 47 language tag, or a reason it is not one.

The locale enters the version key and picks the template environment, the subject and
the currency, so it must be a language tag rather than free text: `en`, `es-MX`,
`zh-Hant-TW`, `de-CH-1996`. Spellings people and systems use for the same tag are
normalised to its canonical case (`EN_gb` and `en_GB.UTF-8` are `en-GB`); anything else
(`English`, `e`, `en GB`, `12`) is refused, and the customer row is rejected with the
reason. Babel parses the tag; the subtag rules checked on top are RFC 5646's.
"""

from __future__ import annotations

import functools
import re

from babel.core import parse_locale

MAX_LENGTH = 35      # RFC 5646 §4.4.1: tags of 35 characters cover every real case
_LANGUAGE = re.compile(r"[a-z]{2,3}\Z")              # ISO 639 codes (no extlang)
_VARIANT = re.compile(r"([a-z0-9]{5,8}|[0-9][a-z0-9]{3})\Z")


class NotALanguageTag(ValueError):
    """The value is not a language tag (the message says what would be)."""


@functools.lru_cache(maxsize=4096)  # a file has few locales; the bound keeps memory flat
def language_tag(value: str) -> str:
    """`value` as a canonical BCP 47 tag (`en_gb` → `en-GB`), or NotALanguageTag."""
    text = value.strip()
    problem = NotALanguageTag(f"{value[:40]!r} is not a language tag (like en, en-GB, es-MX)")
    # a POSIX locale's encoding and modifier (`de_DE.UTF-8@euro`) say nothing about language
    text = text.split(".", 1)[0].split("@", 1)[0]
    if not text or len(text) > MAX_LENGTH or not text.isascii():
        raise problem
    try:
        parts = parse_locale(text.replace("_", "-"), sep="-")
    except ValueError:
        raise problem from None
    language, territory, script, variant = (p or "" for p in parts[:4])
    language, variant = language.lower(), variant.lower()
    if not _LANGUAGE.match(language) or (variant and not _VARIANT.match(variant)):
        raise problem
    return "-".join(p for p in (language, script.title(), territory.upper(), variant) if p)


def language_of(tag: str) -> str:
    """The language subtag: `es` for `es-MX`."""
    return tag.replace("_", "-").split("-", 1)[0].lower()
