"""Text edition did not write, placed into Markdown: shown as typed, never as markup.

report.md, the send report and the Prefect artifacts (Markdown the reviewer's browser
renders) show customer ids, reasons, locales, file names and rendered text. A customer
id such as ``x`![](https://tracker.example/p.png)`y`` used to close the backticks around
it and add an image that the reviewer's browser fetched. Every such value goes through
one of these three, by where it lands:

- `code(value)`: an inline code span (ids, files, locales, names);
- `text(value)`: inline prose (reasons, notes) that can hold no link, image or HTML;
- `fenced(text)`: a fenced block (a diff, an explanation) that no line can close early.

All three turn line breaks and other control and format characters (bidi overrides
included) into visible `\\u…` escapes: a line break would end a table row or start a
block of its own, before any inline escaping counts.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["code", "fenced", "text"]

_INVISIBLE = {"Cc", "Cf", "Zl", "Zp"}
# What turns prose into elements: a link or an image needs `[`, raw HTML and autolinks a
# `<` before a non-blank, and a backslash could cancel an escape of ours. Emphasis and
# entities only change how text looks, so they stay as typed (a reason such as
# "excluded by rule 'tenure_months < 6'" reads the same in the raw file).
_MARKUP = re.compile(r"\\|[\[\]]|<(?=\S)")
_TICKS = re.compile(r"`+")


def _visible(value: str, *, keep_newlines: bool = False) -> str:
    out = []
    for char in value:
        if keep_newlines and char == "\n":
            out.append(char)
        elif char == "\t":
            out.append("    " if keep_newlines else " ")
        elif unicodedata.category(char) in _INVISIBLE:
            point = ord(char)
            out.append(f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}")
        else:
            out.append(char)
    return "".join(out)


def code(value: object) -> str:
    """An inline code span holding `value` exactly: its fence is one backtick longer
    than any run of backticks inside, padded when the value starts or ends with one."""
    shown = _visible(str(value))
    if not shown:
        return "` `"
    longest = max((len(run) for run in _TICKS.findall(shown)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if shown[0] in "` " or shown[-1] in "` " else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def text(value: object) -> str:
    """Inline prose on one line that can hold no link, image or HTML of its own."""
    return _MARKUP.sub(lambda found: "\\" + found.group(0), _visible(str(value)))


def fenced(body: str, info: str = "text") -> str:
    """A fenced code block around `body` (several lines); its fence is longer than any
    run of backticks inside, so no line of the body can close it."""
    shown = _visible(body, keep_newlines=True)
    longest = max((len(run) for run in _TICKS.findall(shown)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{shown}\n{fence}"
