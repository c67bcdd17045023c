"""Every error edition raises on purpose derives from EditionError.

The CLI maps the families to exit codes: ContentError (the campaign, a template or a
module is wrong; exit 2), UsageError (the command line asked for something impossible;
exit 2) and RunError (the run itself failed; exit 1), with DeliveryError and LedgerError
as kinds of RunError. Errors carry the file and line they are about, and stay picklable
because they cross process and Prefect task boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class EditionError(Exception):
    """Base of all edition errors; `str()` gives `file:line: message`."""

    exit_code = 1

    def __init__(self, message: str, file: str | Path | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line

    # keep file/line across pickling (process pools, Prefect)
    def __reduce__(self) -> tuple[type[EditionError], tuple[object, ...]]:
        return (type(self), (self.message, self.file, self.line))

    @property
    def location(self) -> str:
        if self.file and self.line:
            return f"{self.file}:{self.line}"
        return self.file or ""

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ContentError(EditionError):
    """The campaign, a template or a module is invalid: nothing may be rendered."""

    exit_code = 2


class ContentErrors(ContentError):
    """Several content errors found in one pass, reported together."""

    def __init__(self, errors: Iterable[ContentError]):
        self.errors = list(errors)
        first = self.errors[0] if self.errors else None
        super().__init__(
            "\n".join(str(e) for e in self.errors),
            first.file if first else None,
            first.line if first else None,
        )

    def __reduce__(self) -> tuple[type[EditionError], tuple[object, ...]]:
        return (type(self), (self.errors,))


class UsageError(EditionError):
    """The command line (or a flow's form) asked for something impossible."""

    exit_code = 2


class ApprovalError(UsageError):
    """A run cannot be approved, is not approved, or no longer matches its approval."""


class RunError(EditionError):
    """The run could not go on (an unreadable customer file, a full disk...)."""

    exit_code = 1


class FolderBusy(RunError):
    """Another run holds the run folder (or the send ledger, or serve's content root)."""


class DeliveryError(RunError):
    """A delivery target is misconfigured or unusable; nothing was sent for this delivery.

    `file` holds the target (with any secret removed), so `str()` reads `target: message`.
    """

    def __init__(self, message: str, target: str | None = None, line: int | None = None):
        super().__init__(message, target, line)

    @property
    def target(self) -> str | None:
        return self.file

    @property
    def location(self) -> str:
        return self.file or ""


class LedgerError(RunError):
    """The send ledger cannot be used (corrupt file, unknown outcome status...)."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        super().__init__(message, path, line)

    @property
    def path(self) -> str | None:
        return self.file

    @property
    def location(self) -> str:
        return self.file or ""


class LedgerBusy(LedgerError, FolderBusy):
    """Another run holds this ledger's run lock."""


def collect(errors: list[ContentError]) -> None:
    """Raise all collected content errors at once, if there are any."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ContentErrors(errors)
