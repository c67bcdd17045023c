"""Modules as templates see them (`{% for m in modules.main %}{{ m.html }}`).

A personal module (its body reads the customer) shows the version's skeleton body while
a version is laid out, and this customer's body while the customer's pieces run: the
renderer sets `layer.current` for that time (per thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from edition.content.modules import Module

__all__ = ["ModuleView", "layer"]


class ModuleView:
    """A module as templates see it: id, kind, title, html, text, meta.

    A module whose body reads the customer has two bodies: the skeleton's (with the
    customer's holes) while a version is laid out, and the customer's while that
    customer's pieces run (`_personal_layer`): a piece may print it under a test."""

    __slots__ = ("_html", "_module", "_text", "id", "kind", "meta", "title")

    def __init__(self, module: Module, html: str, text: str, personal: bool = False):
        self.id = module.id
        self.kind = module.kind
        self.title = module.title
        self.meta = module.meta
        self._html = html
        self._text = text
        self._module = module if personal else None

    @property
    def html(self) -> str:
        current = layer.current
        if current is not None and self._module is not None:
            return current(self._module, "html")
        return self._html

    @property
    def text(self) -> str:
        current = layer.current
        if current is not None and self._module is not None:
            return current(self._module, "text")
        return self._text

    def __repr__(self) -> str:
        return f"<module {self.kind}/{self.id}>"


class _Layer(threading.local):
    # (module, fmt) -> that customer's body, while pieces run
    current: Callable[[Module, str], str] | None = None
    # that customer's subject line, while pieces run (edition.render.campaign_view)
    subject: Callable[[], object] | None = None


layer = _Layer()
