"""A version's holes in its HTML: cutting customers' values out of a filled document,
and the sentinels that stand for them in the version's shared layout."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Sequence

# Characters an escaped customer value never contains: a static part holding one of
# them can be found unambiguously after a value.
_SPECIAL = frozenset("<>\"'")
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")


class Slots:
    """The holes of a version, grouped so each group's value can be cut out of a fill."""

    def __init__(self, parts: Sequence[str]) -> None:
        if not parts:
            raise ValueError("a shared document has at least one part")
        self.prefix = parts[0]
        self.suffix = parts[-1] if len(parts) > 1 else ""
        # Holes separated only by plain text (e.g. "{{first}} {{last}}") form one slot:
        # the text between them could also occur inside a value.
        self.separators = [part for part in parts[1:-1] if _SPECIAL.intersection(part)]
        self.count = len(self.separators) + 1 if len(parts) > 1 else 0

    def join(self, values: Sequence[str]) -> str:
        pieces = [self.prefix]
        for value, separator in zip(values, [*self.separators, self.suffix], strict=True):
            pieces += (value, separator)
        return "".join(pieces)

    def split(self, html: str) -> list[str] | None:
        """Each slot's (escaped) value in a filled document, or None if not a fill."""
        if self.count == 0:
            return [] if html == self.prefix else None
        end = len(html) - len(self.suffix)
        if end < len(self.prefix) or not html.startswith(self.prefix):
            return None
        if not html.endswith(self.suffix):
            return None
        values, pos = [], len(self.prefix)
        for separator in self.separators:
            # An escaped value holds none of _SPECIAL, so the first match is the separator.
            found = html.find(separator, pos, end)
            if found < 0:
                return None
            values.append(html[pos:found])
            pos = found + len(separator)
        if pos > end:
            return None
        values.append(html[pos:end])
        if any(_SPECIAL.intersection(value) for value in values):
            return None
        return values


def unescape(value: str) -> str | None:
    """The text the HTML parser makes of an escaped value, or None when unsure."""
    if "\r" in value or "\0" in value:
        return None
    if "&" not in value:
        return value
    if "&" in _ENTITY.sub("", value):
        return None
    return html_lib.unescape(value)


def sentinels(widths: Sequence[int], taken: str) -> list[str]:
    """Unique letter-only markers, about as wide as the values they stand for."""
    taken = taken.lower()
    # As short as the slot count allows: a marker wider than a short name would lay the
    # version out with lines its customers do not have.
    shifts = (0,) if len(widths) <= 16 else (8, 4, 0)
    for prefix in ("zq", "qz", "vq", "qv", "jq"):
        markers, padded = [], []
        for index, width in enumerate(widths):
            code = "".join("abcdefghijklmnop"[(index >> shift) & 15] for shift in shifts)
            marker = f"{prefix}{code}{prefix[::-1]}"
            markers.append(marker)
            padded.append(marker + "x" * max(0, min(width, 40) - len(marker)))
        if not any(marker in taken for marker in markers):
            return padded
    raise RuntimeError("no free sentinel prefix")  # pragma: no cover
