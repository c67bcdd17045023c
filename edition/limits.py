"""Bounded templates: no template, module or customer value can take the machine.

Three guards, each failing one customer (or one version) with a reason instead:

- size: a string or list multiplied past the document limit is refused before Python
  allocates it (the sandbox routes `*`, `**` and `+` through `check_binop`), filter
  arguments that ask for more than the limit (`center(10**9)`) are refused, and every
  document is measured as it is rendered (`render`);
- time: a render slower than the limit is stopped by a watchdog thread that raises
  RenderTimeout in the rendering thread (CPython's PyThreadState_SetAsyncExc: it works
  in pool workers and in Prefect's task threads alike, and interrupts pure-Python
  loops such as nested `range()`s that produce no output);
- depth: a recursive macro ends in RecursionError, which the renderer reports.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

DOCUMENT_BYTES = 5_000_000
RENDER_SECONDS = 10.0


class LimitExceeded(Exception):
    """A template asked for more than the campaign allows (size or time)."""


class DocumentTooLarge(LimitExceeded):
    """A document (or a value on its way into one) is larger than the limit."""


class RenderTimeout(LimitExceeded):
    """A render ran longer than the limit; raised in the rendering thread."""


@dataclass(frozen=True)
class Limits:
    """The campaign's `limits:` (document_bytes, render_seconds)."""

    document_bytes: int = DOCUMENT_BYTES
    render_seconds: float = RENDER_SECONDS


def _size(value: Any) -> int | None:
    if isinstance(value, str | bytes | list | tuple):
        return len(value)
    return None


def check_binop(operator: str, left: Any, right: Any, limit: int) -> None:
    """Refuse `'x' * 10**9`, `10 ** 10**10` and concatenations past the limit, up front."""
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            size = _size(seq)
            if size is not None and isinstance(count, int) and size * max(count, 0) > limit:
                raise DocumentTooLarge(f"a value of {size:,} × {count:,} would be larger "
                                       f"than {limit:,} bytes")
    elif operator == "**":
        if isinstance(left, int | float) and isinstance(right, int | float) and (
                abs(right) > 10_000 or (abs(left) > 1 and abs(right) > 1_000)):
            raise DocumentTooLarge(f"{left} ** {right} is too large a number")
    elif operator == "+":
        a, b = _size(left), _size(right)
        if a is not None and b is not None and a + b > limit:
            raise DocumentTooLarge(f"joining {a:,} and {b:,} would pass {limit:,} bytes")


def check_arguments(name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                    limit: int) -> None:
    """A filter asked for a width or count past the limit (`center(10**9)`) is refused."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise DocumentTooLarge(f"the filter {name!r} was asked for {value:,} (more than "
                                   f"{limit:,})")


def render(template: Any, context: Any, limit: int) -> str:
    """Render a Jinja template, stopping as soon as its output passes `limit` characters."""
    parts: list[str] = []
    size = 0
    for chunk in template.generate(context):
        size += len(chunk)
        if size > limit:
            raise DocumentTooLarge(f"the document passed {limit:,} bytes")
        parts.append(chunk)
    return "".join(parts)


class _Watchdog:
    """One thread per process that stops renders running past their deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[int, float] = {}    # thread id -> monotonic deadline
        self._fired: set[int] = set()
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        # a forked child has no watchdog thread: it starts its own on first use (asking
        # os.getpid() on every render instead cost ~1 % of a worker's time)
        os.register_at_fork(after_in_child=self._forget_thread)

    def _forget_thread(self) -> None:
        self._thread = None
        self._lock = threading.Lock()
        self._deadlines.clear()
        self._fired.clear()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="edition-watchdog",
                                            daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while True:
            time.sleep(0.05)
            now = time.monotonic()
            with self._lock:
                for thread_id, deadline in list(self._deadlines.items()):
                    if now > deadline and thread_id not in self._fired:
                        self._fired.add(thread_id)
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(
                            ctypes.c_ulong(thread_id), ctypes.py_object(RenderTimeout))

    @contextmanager
    def limit(self, seconds: float) -> Iterator[None]:
        """Raise RenderTimeout in this thread if the block runs longer than `seconds`."""
        if seconds <= 0 or getattr(self._local, "depth", 0):
            yield  # an inner limit: the outer one already watches this thread
            return
        thread_id = threading.get_ident()
        self._local.depth = 1
        with self._lock:
            self._ensure_thread()
            self._fired.discard(thread_id)
            self._deadlines[thread_id] = time.monotonic() + seconds
        try:
            yield
        finally:
            self._local.depth = 0
            with self._lock:
                self._deadlines.pop(thread_id, None)
                if thread_id in self._fired:
                    self._fired.discard(thread_id)
                    # fired as the block ended: take back the exception not yet raised
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


watchdog = _Watchdog()
