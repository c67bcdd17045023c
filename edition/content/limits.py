"""Bounded templates: no template, module or customer value can take the machine.

Three guards, each failing one customer (or one version) with a reason instead:

- size: a value that would pass the document limit is refused before Python allocates
  it, because one C call (`str.replace`, `str.join`, `%`, a 1 GB string) cannot be
  interrupted by the watchdog: the sandbox routes `*`, `**`, `+` and `%` through
  `check_binop`, `~` and every captured block (`set`, macros, `call`, `filter`) through
  `check_concat`, method calls (`replace`, `join`, `format`, `center`, `expandtabs`,
  `list.extend`, ...) through `check_call`, and the filters that multiply (`replace`,
  `join`, `format`, `indent`, `wordwrap`, `center`, `batch`, ...) through their own
  estimate; every document is measured as it is rendered (`render`);
- time: a render slower than the limit is stopped by a watchdog thread that raises
  RenderTimeout in the rendering thread (CPython's PyThreadState_SetAsyncExc: it works
  in pool workers and in Prefect's task threads alike, and interrupts pure-Python
  loops such as nested `range()`s that produce no output);
- depth: a recursive macro ends in RecursionError, which the renderer reports.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeGuard

from pydantic import ValidationInfo, field_validator

from edition.content.campaign_values import Strict
from edition.content.errors_at_lines import fail

if TYPE_CHECKING:
    from jinja2 import Template

DOCUMENT_BYTES = 5_000_000
RENDER_SECONDS = 10.0


class LimitExceeded(Exception):
    """A template asked for more than the campaign allows (size or time)."""


class DocumentTooLarge(LimitExceeded):
    """A document (or a value on its way into one) is larger than the limit."""


class RenderTimeout(LimitExceeded):
    """A render ran longer than the limit; raised in the rendering thread."""


class Limits(Strict):
    """The campaign's `limits: {document_bytes: 5000000, render_seconds: 10}`: what one
    edition may take."""

    document_bytes: int = DOCUMENT_BYTES
    render_seconds: float = RENDER_SECONDS

    @field_validator("document_bytes", "render_seconds", mode="before")
    @classmethod
    def _positive(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise fail(f"limits.{info.field_name} must be a positive number")
        return value


def _size(value: object) -> int | None:
    if isinstance(value, str | bytes | list | tuple):
        return len(value)
    return None


def text_size(value: object, limit: int, depth: int = 0) -> int:
    """About how long `str(value)` is, without making it; stops counting past `limit`.

    A list of 5,000 references to one 5 MB string is small until something prints or
    joins it: this counts what that would write.
    """
    if isinstance(value, str):
        return str.__len__(value)  # not the subclass's: text with holes refuses len()
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 2
    if isinstance(value, bytes | bytearray):
        return 4 * len(value) + 3
    if depth > 20:  # a list that holds itself prints as [...]
        return 5
    if isinstance(value, dict):
        items: Iterator[object] = (x for kv in value.items() for x in kv)
    elif isinstance(value, list | tuple | set | frozenset):
        items = iter(value)
    else:
        return 64  # numbers, dates, modules, the customer: their text is short
    total = 2
    for item in items:
        total += text_size(item, limit, depth + 1) + 4
        if total > limit:
            break
    return total


def _refuse_over(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise DocumentTooLarge(f"{what} would make {size:,} characters (more than "
                               f"{limit:,})")


# What a template computes with is untyped to Jinja's sandbox, which calls these hooks;
# their checks narrow by isinstance and _ints, which the type checker cannot follow.
def check_binop(operator: str, left: Any, right: Any, limit: int) -> None:
    """Refuse `'x' * 10**9`, `10 ** 10**10`, `'%9999999999d' % 1` and concatenations
    past the limit, up front."""
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            size = _size(seq)
            if size is not None and isinstance(count, int) and size * max(count, 0) > limit:
                raise DocumentTooLarge(f"a value of {size:,} × {count:,} would be larger "
                                       f"than {limit:,} bytes")
        if _ints(left, right) and left.bit_length() + right.bit_length() > 8 * limit:
            raise DocumentTooLarge("the product is too large a number")
    elif operator == "**":
        if isinstance(left, int | float) and isinstance(right, int | float) and (
                abs(right) > 10_000 or (abs(left) > 1 and abs(right) > 1_000)):
            raise DocumentTooLarge(f"{left} ** {right} is too large a number")
        if _ints(left, right) and left.bit_length() * max(right, 0) > 8 * limit:
            raise DocumentTooLarge("the power is too large a number")
    elif operator == "%" and isinstance(left, str):
        _refuse_over(percent_size(left, right, limit), limit, "the % formatting")
    elif operator == "+":
        a, b = _size(left), _size(right)
        if a is not None and b is not None and a + b > limit:
            raise DocumentTooLarge(f"joining {a:,} and {b:,} would pass {limit:,} bytes")


def _ints(*values: Any) -> bool:
    return all(_int(v) for v in values)


def _int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


_PERCENT = re.compile(r"%(?:\((?P<key>[^)]*)\))?[-+ #0]*(?P<width>\*|\d+)?"
                      r"(?:\.(?P<precision>\*|\d+))?[hlL]?(?P<type>[diouxXeEfFgGcrsa%])")


def percent_size(template: str, values: object, limit: int) -> int:
    """About how long `template % values` is (each conversion: its value or its width)."""
    positional = list(values) if isinstance(values, tuple) else [values]
    mapping = values if isinstance(values, dict) else None
    total, index = len(template), 0

    def take() -> object:
        nonlocal index
        index += 1
        return positional[index - 1] if index <= len(positional) else None

    for match in _PERCENT.finditer(template):
        if match["type"] == "%":
            continue
        numbers: list[int] = []
        for part in ("width", "precision"):
            text = match[part]
            value = take() if text == "*" else int(text) if text else 0
            numbers.append(value if _int(value) else 0)
        if mapping is not None and match["key"] is not None:
            value = mapping.get(match["key"])
        else:
            value = take()
        shown = text_size(value, limit) * (4 if match["type"] in "ra" else 1)
        total += max(numbers[0], shown + numbers[1])
        if total > limit:
            break
    return total


def check_concat(values: tuple[object, ...], limit: int) -> tuple[object, ...]:
    """`a ~ b ~ c`: refused when the joined text would pass the limit."""
    total = 0
    for value in values:
        total += text_size(value, limit)
        _refuse_over(total, limit, "joining with ~")
    return values


def bounded_join(parts: Any, limit: int) -> str:
    """The environment's concat (captured blocks, macros): refused past the limit."""
    buffer, size = [], 0
    for part in parts:
        size += str.__len__(part) if isinstance(part, str) else len(part)
        if size > limit:
            raise DocumentTooLarge(f"a captured block passed {limit:,} characters")
        buffer.append(part)
    return "".join(buffer)


def join_size(separator: str, items: list[object], limit: int) -> int:
    total = len(separator) * max(len(items) - 1, 0)
    for item in items:
        total += text_size(item, limit)
        if total > limit:
            break
    return total


def replace_size(text: str, old: str, new: str, count: int, limit: int) -> int:
    found = len(text) + 1 if old == "" else text.count(old)  # counts, allocates nothing
    if count is not None and count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


# str methods whose result can be far larger than the string and its arguments
_PADDING = {"center", "ljust", "rjust", "zfill"}


def check_call(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
               limit: int) -> tuple[Any, ...]:
    """A method call from a template, refused when its result would pass the limit.

    Returns the arguments to call with (an iterator given to `join` is read once here).
    """
    owner, name = getattr(func, "__self__", None), getattr(func, "__name__", "")
    if isinstance(owner, str):
        if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and \
                isinstance(args[1], str):
            count = args[2] if len(args) > 2 else kwargs.get("count", -1)
            _refuse_over(replace_size(owner, args[0], args[1],
                                      count if _ints(count) else -1, limit), limit, "replace")
        elif name == "join" and args:
            items = list(args[0])
            _refuse_over(join_size(owner, items, limit), limit, "join")
            args = (items, *args[1:])
        elif name in _PADDING and args and _ints(args[0]):
            _refuse_over(args[0], limit, name)
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            if _ints(size):
                _refuse_over(len(owner) + owner.count("\t") * size, limit, "expandtabs")
    elif isinstance(owner, list) and name == "extend" and args:
        items = list(args[0])
        if len(owner) + len(items) > limit:
            raise DocumentTooLarge(f"extend would make a list of {len(owner) + len(items):,} "
                                   f"items (more than {limit:,})")
        args = (items, *args[1:])
    return args


def check_arguments(name: str, args: tuple[object, ...], kwargs: dict[str, object],
                    limit: int) -> None:
    """A filter asked for a width or count past the limit (`center(10**9)`) is refused."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise DocumentTooLarge(f"the filter {name!r} was asked for {value:,} (more than "
                                   f"{limit:,})")


def render(template: Template, context: Mapping[str, object], limit: int) -> str:
    """Render a Jinja template, stopping as soon as its output passes `limit` characters."""
    parts: list[str] = []
    size = 0
    for chunk in template.generate(context):
        size += len(chunk)
        if size > limit:
            raise DocumentTooLarge(f"the document passed {limit:,} bytes")
        parts.append(chunk)
    return "".join(parts)


class _Depth(threading.local):
    """Per thread: 1 while a limit watches it (an inner limit then leaves it alone)."""

    depth = 0


class _Watchdog:
    """One thread per process that stops renders running past their deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[int, float] = {}    # thread id -> monotonic deadline
        self._fired: set[int] = set()
        self._thread: threading.Thread | None = None
        self._local = _Depth()
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
        if seconds <= 0 or self._local.depth:
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
