"""`campaign` as templates see it: the settings, and the subject line as this customer's.

A layout prints `<title>{{ campaign.subject }}</title>` or a preheader from it, and means
the subject line the customer will see, not the subject's template source. The subject
is a template of its own (it may read the customer, and a subject-line test gives each
variant its version), so `campaign.subject` is rendered when a template first reads it:
for the whole render, this customer's line; for the version's skeleton, the line with
its customer holes (printed, they are filled per customer like any hole); while a
customer's pieces run (`layer.subject`), that customer's line again. Inside the subject
itself, and in module bodies (rendered before it), it stays the text as written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edition.render.module_views import layer

__all__ = ["CampaignView", "SubjectLine"]


class SubjectLine:
    """The subject line, rendered once on first read (and as written while it renders,
    so that a subject printing `campaign.subject` does not loop)."""

    __slots__ = ("_error", "_render", "_value")

    def __init__(self, written: object, render: Callable[[], object] | None = None):
        self._value = written
        self._render = render
        self._error: BaseException | None = None

    def __call__(self) -> object:
        if self._error is not None:  # every later read fails the same way
            raise self._error
        if self._render is not None:
            render, self._render = self._render, None   # read by the subject itself: as written
            try:
                self._value = render()
            except BaseException as exc:
                self._error = exc
                raise
        return self._value


class CampaignView(dict[str, Any]):
    """The campaign's settings (a plain dict for everything but `subject`).

    The dict itself holds the subject as written, so that whatever looks at the values
    (the probe's taint checks, a loop over `campaign.items()`) sees no customer data."""

    __slots__ = ("_subject",)

    def __init__(self, settings: dict[str, Any], subject: SubjectLine):
        super().__init__(settings)
        self._subject = subject

    def __getitem__(self, key: str) -> Any:
        if key == "subject":
            current = layer.subject
            return current() if current is not None else self._subject()
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self:
            return default
        return self[key]
