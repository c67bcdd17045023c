"""Why one customer's edition could not be rendered, and where in the content.

A render error becomes a RenderFailure naming the template file and line (or the
module, or the campaign's subject) and a `code` the manifest and the report count by.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2.exceptions import SecurityError, TemplateError, UndefinedError

from edition.content.limits import DocumentTooLarge, LimitExceeded, RenderTimeout
from edition.errors import EditionError
from edition.render.skeleton import NotShareable

__all__ = ["CONTENT_LIMITS", "RENDER_ERRORS", "RenderFailure", "failure_of", "located"]


class RenderFailure(EditionError):
    """One customer's edition could not be rendered; the reason goes to the manifest.

    `code` says what kind: missing_field, too_large, too_slow, too_deep, sandbox, error.
    Only the first of them depends on the customer alone; the others are the content's.
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 code: str = "error"):
        super().__init__(message, file, line)
        self.code = code

    def __reduce__(self) -> tuple[type[RenderFailure], tuple[Any, ...]]:  # across processes
        return (type(self), (self.message, self.file, self.line, self.code))


# a version's own limits: too big, too slow, too deep (not a customer's missing field)
CONTENT_LIMITS = (LimitExceeded, RecursionError, MemoryError)


# what a render may raise for one customer (everything else is a bug, reported as such)
RENDER_ERRORS = (TemplateError, TypeError, ValueError, ArithmeticError, LookupError,
                 AttributeError, LimitExceeded, RecursionError, MemoryError)


def failure_of(exc: Exception, campaign_file: str, template_files: Mapping[str, str],
               render_seconds: float) -> RenderFailure:
    """The failure of one render: what went wrong, in which file and line."""
    where, line = campaign_file, None
    for frame in traceback.extract_tb(exc.__traceback__):
        name = template_files.get(str(Path(frame.filename).resolve())) if (
            frame.filename and not frame.filename.startswith("<")) else None
        if name:
            where, line = name, frame.lineno
        elif frame.filename and frame.filename.endswith(".md"):
            where, line = frame.filename, None
        elif frame.filename == "<template>":
            where, line = f"{campaign_file} (subject)", None
    code = "error"
    if isinstance(exc, UndefinedError):
        message, code = exc.message or "undefined value", "missing_field"
    elif isinstance(exc, SecurityError):
        message, code = f"refused by the sandbox: {exc}", "sandbox"
    elif isinstance(exc, DocumentTooLarge | MemoryError):
        message, code = f"too large: {exc}", "too_large"
    elif isinstance(exc, RenderTimeout):
        message, code = f"rendering took longer than {render_seconds:g} s", "too_slow"
    elif isinstance(exc, RecursionError):
        message, code = "a macro or include calls itself too deeply (recursion)", "too_deep"
    else:
        message = f"{type(exc).__name__}: {exc}"
    return RenderFailure(message, where, line, code)


def located(exc: NotShareable, what: str,
            name_of: Callable[[str | None, str | None], str]) -> str:
    """`templates/x.html.j2:12: customer.x is used in an expression`."""
    message = str(exc)
    if getattr(exc, "located", False) or ":" in message.split(" ", 1)[0]:
        return message   # the residualizer's reasons name their line already
    where = ""
    for frame, lineno in _frames(exc.__traceback__):
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            line = template.get_corresponding_lineno(lineno)
            where = f"{name_of(template.name, template.filename)}:{line}"
    return f"{where}: {message}" if where else f"{what}: {message}"


def _frames(tb: TracebackType | None) -> Iterable[tuple[Any, int]]:
    while tb is not None:
        yield tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next
