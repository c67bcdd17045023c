"""The personal layer: render a version once, fill in each customer's values after.

A version's templates are rendered once, as rewritten by edition.render.residual, against
a *probe* customer: the skeleton. Two kinds of spots are left in its output, as
private-use markers:

- a *hole*: `customer.x` printed through filters. It remembers the field and the filters;
  filling it replays exactly what Jinja would have done (look the field up, apply the
  same filters, escape the same way).
- a *piece*: a statement that reads the customer (a condition, a loop over a customer's
  list, an expression). It remembers the statement (a `Fragment`) and every value the
  statement could see where it stands; per customer Jinja runs the statement with those
  values and the customer's fields.

So each edition is byte for byte the whole-template render. Whatever the skeleton cannot
run without a customer raises NotShareable, and that template is rendered whole for
every customer instead: slower, never wrong; the reason, with its line, is reported.
The skeleton's holes and pieces, and how a customer fills them, are edition.render.skeleton.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, cast

from jinja2 import nodes
from jinja2.nodes import EvalContext
from jinja2.runtime import LoopContext, Macro
from jinja2.utils import Cycler, Joiner, Namespace, _PassArg, pass_context, pass_eval_context
from markupsafe import Markup

from edition.content.environment import EditionEnvironment
from edition.render.residual import (
    POISON,
    RESIDUAL,
    UNSHAREABLE,
    Fragment,
    Residualizer,
)
from edition.render.skeleton import CLOSE, OPEN, Hole, NotShareable, Piece, Step, TextHole

# customer fields that are part of the version key: constants for the skeleton
CONSTANT_FIELDS = frozenset({"locale"})


class FieldProbe:
    """Stands for `customer.<field>` (after some filters) during the probe render."""

    __slots__ = ("field", "steps")

    def __init__(self, field: str, steps: tuple[Step, ...] = ()):
        self.field = field
        self.steps = steps

    def then(self, step: Step) -> FieldProbe:
        return FieldProbe(self.field, (*self.steps, step))

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise NotShareable(f"{self._what()} is used in an expression")

    def _what(self) -> str:
        """What the message names (the dunders below are bound to this class's _refuse)."""
        return f"customer.{self.field}"

    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __str__ = __html__ = __len__ = __iter__ = __contains__ = __getitem__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse
    __mod__ = __rmod__ = __truediv__ = __rtruediv__ = __floordiv__ = _refuse
    __neg__ = __pos__ = __int__ = __float__ = __index__ = __call__ = _refuse
    __format__ = __round__ = _refuse
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<probe customer.{self.field}>"


class TextProbe(FieldProbe):
    """Stands for text holding customer data (its markers) after some filters: filled
    in and filtered per customer (skeleton.TextHole)."""

    __slots__ = ("inner", "markup", "text")

    def __init__(self, text: str, markup: bool, inner: tuple[Hole | Piece, ...],
                 steps: tuple[Step, ...] = ()):
        super().__init__("(text containing customer data)", steps)
        self.text, self.markup, self.inner = text, markup, inner

    def then(self, step: Step) -> TextProbe:
        return TextProbe(self.text, self.markup, self.inner, (*self.steps, step))

    def _what(self) -> str:
        return "text containing customer data"


class CustomerProbe:
    """Stands for `customer` itself: only field reads are allowed; the fields the
    version key holds (`locale`) read as the version's values."""

    __slots__ = ("constants",)

    def __init__(self, constants: Mapping[str, Any] | None = None):
        self.constants = dict(constants or {})

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise NotShareable("the customer object is used as a whole")

    __bool__ = __eq__ = __str__ = __html__ = __iter__ = __len__ = __contains__ = _refuse
    __hash__ = None  # type: ignore[assignment]


class Poison:
    """What the skeleton holds for a name set from customer data: any use stops it."""

    __slots__ = ("name", "where")

    def __init__(self, name: str, where: str):
        self.name, self.where = name, where

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise NotShareable(f"{self.where}: '{self.name}' is set from customer data and read "
                           f"where the version is laid out (through an include or a macro)")

    __bool__ = __eq__ = __ne__ = __str__ = __html__ = __iter__ = __len__ = _refuse
    __contains__ = __getitem__ = __call__ = __add__ = __radd__ = __lt__ = __gt__ = _refuse
    __getattr__ = _refuse
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
    if isinstance(value, FieldProbe | CustomerProbe | Tainted | Poison):
        return True
    if isinstance(value, str):
        return OPEN in value
    if isinstance(value, list | tuple):
        return any(tainted(v) for v in value)
    if isinstance(value, dict):
        return any(tainted(v) for v in value.values())
    return False


class _Recorder(threading.local):
    holes: list[Hole | Piece] | None = None


class _Internal:
    """Marks the skeleton's own functions: no sandbox or limit checks on their calls."""


class ProbeEnvironment(EditionEnvironment):
    """The sandbox, plus the bookkeeping that turns customer reads into holes and pieces.

    Every template it compiles (page, text, subject, module bodies, what they include)
    is first rewritten by edition.render.residual for the skeleton render."""

    def __init__(self, *args: Any, where: Callable[[str | None, str | None], str] | None = None,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.recorder = _Recorder()
        self.fragments: list[Fragment] = []
        self._where = where or (lambda name, filename: filename or name or "<template>")
        self._macro_reads: dict[str, frozenset[str] | None] = {}
        self.finalize = self._finalize
        self.filters = {name: self._wrap_filter(name, f) for name, f in self.filters.items()}
        # jinja types its tests as plain `function`s
        self.tests = {name: self._wrap_test(name, cast(Callable[..., Any], t))
                      for name, t in self.tests.items()}
        self.globals.update({RESIDUAL: self._residual, UNSHAREABLE: _unshareable,
                             POISON: _poison})

    # -- the skeleton's templates ------------------------------------------------------

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        return Residualizer(
            name=name, filename=filename, where=self._where(name, filename),
            constants=CONSTANT_FIELDS, register=self._register,
            macro_reads=self._reading_macros, checked_filters=self._replayable,
        ).transform(tree)

    def _register(self, fragment: Fragment) -> int:
        self.fragments.append(fragment)
        return len(self.fragments) - 1

    def _replayable(self, name: str) -> bool:
        func = self.filters.get(name)
        return func is not None and getattr(func, "jinja_pass_arg", None) is not _PassArg.context

    def _reading_macros(self, template: str) -> frozenset[str] | None:
        """The macros of an imported template whose bodies read the customer."""
        if template not in self._macro_reads:
            found: frozenset[str] | None = frozenset({"*"})
            try:
                source, filename, _ = self.loader.get_source(self, template)  # type: ignore[union-attr]
                tree = EditionEnvironment._parse(self, source, template, filename)
                probe = Residualizer(name=template, filename=filename, where=template,
                                     constants=CONSTANT_FIELDS, register=lambda f: -1)
                probe._collect_macros(tree.body)
                found = frozenset(probe.tainted_macros)
            except Exception:
                pass  # unreadable: every macro of it counts as reading the customer
            self._macro_reads[template] = found
        return self._macro_reads[template]

    @pass_context
    def _residual(self, context: Any, fragment_id: int, names: dict[str, Any]) -> Markup:
        """Where a fragment stands: record it with what it can see; leave its marker."""
        holes = self.recorder.holes
        if holes is None:
            raise NotShareable("not recording")
        values = dict(context.get_all())
        for name, value in names.items():
            values[name] = _snapshot(value)
        for name, value in values.items():
            if name != "customer" and not isinstance(value, Poison) and tainted(value):
                raise NotShareable(f"{self.fragments[fragment_id].where}: '{name}' holds "
                                   f"customer data where a statement on the customer stands")
        holes.append(Piece(self.fragments[fragment_id], values))
        return Markup(f"{OPEN}{len(holes) - 1}{CLOSE}")

    _residual._edition_internal = True  # type: ignore[attr-defined]

    @pass_eval_context
    def _finalize(self, eval_ctx: EvalContext, value: Any) -> Any:
        if isinstance(value, FieldProbe):
            holes = self.recorder.holes
            if holes is None:
                raise NotShareable("not recording")
            if isinstance(value, TextProbe):
                holes.append(TextHole(value.field, value.steps, bool(eval_ctx.autoescape),
                                      self._printing_line(), value.text, value.markup,
                                      value.inner))
            else:
                holes.append(Hole(value.field, value.steps, bool(eval_ctx.autoescape),
                                  self._printing_line()))
            return f"{OPEN}{len(holes) - 1}{CLOSE}"
        if isinstance(value, Tainted):
            return Markup(str.__str__(value))
        if isinstance(value, CustomerProbe):
            raise NotShareable("the customer object is printed as a whole")
        return self.bounded_output(value)

    def _printing_line(self) -> str:
        """`templates/x.html.j2:12`: the template line being rendered (once per version)."""
        frame = sys._getframe(2)
        while frame is not None:
            template = frame.f_globals.get("__jinja_template__")
            if template is not None:
                line = template.get_corresponding_lineno(frame.f_lineno)
                return f"{self._where(template.name, template.filename)}:{line}"
            frame = frame.f_back  # type: ignore[assignment]
        return ""

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
            if (isinstance(value, str) and OPEN in str.__str__(value)
                    and pass_arg is not _PassArg.context):
                # a module body that reads the customer, through striptags or truncate:
                # filled in, then filtered, per customer
                holes = self.recorder.holes
                if holes is None:
                    raise NotShareable("not recording")
                text = TextProbe(str.__str__(value), isinstance(value, Markup), tuple(holes))
                autoescape = bool(lead and pass_arg is _PassArg.eval_context
                                  and lead[0].autoescape)
                return text.then(Step(func, pass_arg, args, tuple(kwargs.items()), autoescape))
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
            if attribute in obj.constants:
                return obj.constants[attribute]
            return FieldProbe(attribute)
        if tainted(obj):
            raise NotShareable(f"attribute {attribute!r} of customer data")
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, CustomerProbe) and isinstance(argument, str):
            if argument in obj.constants:
                return obj.constants[argument]
            return FieldProbe(argument)
        if tainted(obj) or tainted(argument):
            raise NotShareable("subscript of customer data")
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(__obj, "_edition_internal", False):
            return __context.call(__obj, *args, **kwargs)
        if not isinstance(__obj, Macro) and (
                tainted(args) or tainted(kwargs) or tainted(getattr(__obj, "__self__", None))):
            raise NotShareable("customer data is passed to a call")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, str) and OPEN in result:
            return Tainted(result)
        return result

    def record(self) -> list[Hole | Piece]:
        """Start recording holes for one probe render (per thread)."""
        self.recorder.holes = []
        return self.recorder.holes

    def stop(self) -> None:
        self.recorder.holes = None


def _unshareable(reason: str) -> Any:
    """Left by the residualizer where a statement cannot be cut out exactly."""
    raise NotShareable(reason)


def _poison(name: str, where: str) -> Poison:
    return Poison(name, where)


_unshareable._edition_internal = True  # type: ignore[attr-defined]
_poison._edition_internal = True  # type: ignore[attr-defined]


class LoopSnapshot:
    """`loop` as it was where a fragment stands (the loop itself moves on)."""

    def __init__(self, loop: LoopContext):
        self.index0, self.index = loop.index0, loop.index
        self.revindex0, self.revindex = loop.revindex0, loop.revindex
        self.first, self.last, self.length = loop.first, loop.last, loop.length
        self.depth0, self.depth = loop.depth0, loop.depth
        self.previtem, self.nextitem = loop.previtem, loop.nextitem

    def cycle(self, *args: Any) -> Any:
        if not args:
            raise TypeError("no items for cycling given")
        return args[self.index0 % len(args)]

    def changed(self, *value: Any) -> bool:
        raise NotShareable("loop.changed() next to customer data")

    def __call__(self, *args: Any) -> Any:
        raise NotShareable("a recursive loop next to customer data")


def _snapshot(value: Any) -> Any:
    """A captured value as it is now: the skeleton goes on changing loops and namespaces."""
    if isinstance(value, LoopContext):
        return LoopSnapshot(value)
    if isinstance(value, Namespace):
        return Namespace(object.__getattribute__(value, "_Namespace__attrs"))
    if isinstance(value, Cycler | Joiner):
        raise NotShareable("a cycler or joiner next to customer data")
    if type(value) in (list, dict, set):
        return type(value)(value)
    return value


