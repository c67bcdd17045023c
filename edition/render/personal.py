"""The personal layer: render a version once, fill in each customer's values after.

A version's template is rendered once against a *probe* customer. Every read of a
customer field becomes a hole (a private-use marker in the output) that remembers the
field and the filters applied to it. Filling a hole for a customer replays exactly what
Jinja would have done: look the field up (StrictUndefined if missing), apply the same
filters, escape the same way. So each edition is byte-for-byte the whole-template render.

Whatever the probe cannot express exactly — a condition, loop, test or comparison on
customer data, a concatenation, a method call — raises NotShareable, and that template
is rendered whole for every customer instead: slower, never wrong.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2.nodes import EvalContext
from jinja2.runtime import Macro
from jinja2.utils import _PassArg, pass_eval_context
from markupsafe import Markup, escape

from edition.content.environment import CustomerView, EditionEnvironment

OPEN, CLOSE = "\ue000", "\ue001"
MARKER = re.compile(f"{OPEN}(\\d+){CLOSE}")


class NotShareable(Exception):
    """The template does something with customer data the probe cannot replay."""


@dataclass(frozen=True)
class Step:
    """One filter applied to a customer field, replayed per customer."""

    func: Callable[..., Any]
    pass_arg: _PassArg | None
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]
    autoescape: bool


@dataclass(frozen=True)
class Hole:
    """A customer-dependent spot in a version's output."""

    field: str
    steps: tuple[Step, ...]
    escaped: bool          # written in an autoescaped context

    def raw(self, fields: Mapping[str, Any], view: CustomerView,
            env: EditionEnvironment) -> Any:
        """The value after the filters, before escaping (may raise UndefinedError)."""
        value = fields[self.field] if self.field in fields else env.undefined(
            obj=view, name=self.field)
        for step in self.steps:
            kwargs = dict(step.kwargs)
            if step.pass_arg is _PassArg.environment:
                value = step.func(env, value, *step.args, **kwargs)
            elif step.pass_arg is _PassArg.eval_context:
                value = step.func(EvalContext(env, None) if not step.autoescape
                                  else _autoescaping(env), value, *step.args, **kwargs)
            else:
                value = step.func(value, *step.args, **kwargs)
        return value

    def output(self, fields: Mapping[str, Any], view: CustomerView,
               env: EditionEnvironment) -> str:
        """What Jinja writes for this hole when rendering the whole template."""
        value = self.raw(fields, view, env)
        return str(escape(value)) if self.escaped else str(value)


def _autoescaping(env: EditionEnvironment) -> EvalContext:
    ctx = EvalContext(env, None)
    ctx.autoescape = True
    return ctx


class FieldProbe:
    """Stands for `customer.<field>` (after some filters) during the probe render."""

    __slots__ = ("field", "steps")

    def __init__(self, field: str, steps: tuple[Step, ...] = ()):
        self.field = field
        self.steps = steps

    def then(self, step: Step) -> FieldProbe:
        return FieldProbe(self.field, (*self.steps, step))

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise NotShareable(f"customer.{self.field} is used in an expression")

    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __str__ = __html__ = __len__ = __iter__ = __contains__ = __getitem__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse
    __mod__ = __rmod__ = __truediv__ = __rtruediv__ = __floordiv__ = _refuse
    __neg__ = __pos__ = __int__ = __float__ = __index__ = __call__ = _refuse
    __format__ = __round__ = _refuse
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<probe customer.{self.field}>"


class CustomerProbe:
    """Stands for `customer` itself: only field reads are allowed."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise NotShareable("the customer object is used as a whole")

    __bool__ = __eq__ = __str__ = __html__ = __iter__ = __len__ = __contains__ = _refuse
    __hash__ = None  # type: ignore[assignment]


class Tainted(Markup):
    """Rendered text that contains holes: fine to output, refused for anything else."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise NotShareable("text containing customer data is used in an expression")

    __eq__ = __ne__ = __lt__ = __gt__ = __le__ = __ge__ = __contains__ = _refuse
    __len__ = __iter__ = __getitem__ = __add__ = __radd__ = __mod__ = __html__ = _refuse
    __bool__ = _refuse
    __hash__ = None  # type: ignore[assignment]

    def __getattribute__(self, name: str) -> Any:
        if name in {"__class__", "__str__", "__repr__", "__reduce__", "__reduce_ex__"}:
            return super().__getattribute__(name)
        if not name.startswith("__"):
            raise NotShareable("text containing customer data is used in an expression")
        return super().__getattribute__(name)


def tainted(value: Any) -> bool:
    """Does this value carry customer data from the probe?"""
    if isinstance(value, FieldProbe | CustomerProbe | Tainted):
        return True
    if isinstance(value, str):
        return OPEN in value
    if isinstance(value, list | tuple):
        return any(tainted(v) for v in value)
    if isinstance(value, dict):
        return any(tainted(v) for v in value.values())
    return False


class _Recorder(threading.local):
    holes: list[Hole] | None = None


class ProbeEnvironment(EditionEnvironment):
    """The sandbox, plus the bookkeeping that turns customer reads into holes."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.recorder = _Recorder()
        self.finalize = self._finalize
        self.filters = {name: self._wrap_filter(name, f) for name, f in self.filters.items()}
        self.tests = {name: self._wrap_test(name, t) for name, t in self.tests.items()}

    @pass_eval_context
    def _finalize(self, eval_ctx: EvalContext, value: Any) -> Any:
        if isinstance(value, FieldProbe):
            holes = self.recorder.holes
            if holes is None:
                raise NotShareable("not recording")
            holes.append(Hole(value.field, value.steps, bool(eval_ctx.autoescape)))
            return f"{OPEN}{len(holes) - 1}{CLOSE}"
        if isinstance(value, Tainted):
            return Markup(str.__str__(value))
        if isinstance(value, CustomerProbe):
            raise NotShareable("the customer object is printed as a whole")
        return self.bounded_output(value)

    def _wrap_filter(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        pass_arg = _PassArg.from_obj(func)

        def wrapper(*all_args: Any, **kwargs: Any) -> Any:
            lead = all_args[:1] if pass_arg is not None else ()
            value, args = (all_args[1], all_args[2:]) if lead else (all_args[0], all_args[1:])
            if tainted(args) or tainted(kwargs):
                raise NotShareable(f"customer data is passed to the filter {name!r}")
            if isinstance(value, FieldProbe):
                if pass_arg is _PassArg.context:
                    raise NotShareable(f"the filter {name!r} needs the whole context")
                autoescape = bool(lead and pass_arg is _PassArg.eval_context
                                  and lead[0].autoescape)
                return value.then(Step(func, pass_arg, args, tuple(kwargs.items()), autoescape))
            if tainted(value):
                raise NotShareable(f"text containing customer data goes through {name!r}")
            return func(*all_args, **kwargs)

        if pass_arg is not None:
            wrapper.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
        return wrapper

    def _wrap_test(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        pass_arg = _PassArg.from_obj(func)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if tainted(args) or tainted(kwargs):
                raise NotShareable(f"customer data is tested with {name!r}")
            return func(*args, **kwargs)

        if pass_arg is not None:
            wrapper.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
        return wrapper

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, CustomerProbe):
            return FieldProbe(attribute)
        if tainted(obj):
            raise NotShareable(f"attribute {attribute!r} of customer data")
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, CustomerProbe) and isinstance(argument, str):
            return FieldProbe(argument)
        if tainted(obj) or tainted(argument):
            raise NotShareable("subscript of customer data")
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(__obj, Macro) and (
                tainted(args) or tainted(kwargs) or tainted(getattr(__obj, "__self__", None))):
            raise NotShareable("customer data is passed to a call")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, str) and OPEN in result:
            return Tainted(result)
        return result

    def record(self) -> list[Hole]:
        """Start recording holes for one probe render (per thread)."""
        self.recorder.holes = []
        return self.recorder.holes

    def stop(self) -> None:
        self.recorder.holes = None


@dataclass
class SharedDocument:
    """One format of one version: static parts with customer holes between them.

    `parts` has one more entry than `holes`; `fill` interleaves them with one
    customer's values. `finish` turns a hole's Jinja output into what it becomes in the
    finished document (e.g. after CSS inlining re-serializes the HTML); it returns
    None when it cannot, and the caller renders that customer whole instead.
    """

    parts: list[str]
    holes: list[Hole]
    finish: list[Callable[[str], str | None]] | None = None

    def fill(self, fields: Mapping[str, Any], view: CustomerView,
             env: EditionEnvironment) -> str | None:
        """The finished document for one customer, or None if it must be rendered whole."""
        out = [self.parts[0]]
        for i, hole in enumerate(self.holes):
            text = hole.output(fields, view, env)
            if self.finish is not None:
                finished = self.finish[i](text)
                if finished is None:
                    return None
                text = finished
            out.append(text)
            out.append(self.parts[i + 1])
        return "".join(out)


def split(output: str, holes: list[Hole]) -> SharedDocument:
    """Cut a probe render at its markers."""
    pieces = MARKER.split(output)
    parts = pieces[0::2]
    order = [holes[int(i)] for i in pieces[1::2]]
    return SharedDocument(parts, order)
