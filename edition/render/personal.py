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
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.compiler import Frame
from jinja2.nodes import EvalContext
from jinja2.runtime import LoopContext, Macro
from jinja2.utils import Cycler, Joiner, Namespace, _PassArg, pass_context, pass_eval_context
from markupsafe import Markup, escape

from edition.content.environment import BoundedCodeGenerator, CustomerView, EditionEnvironment
from edition.content.limits import DocumentTooLarge
from edition.render.residual import (
    POISON,
    RESIDUAL,
    UNSHAREABLE,
    Fragment,
    Residualizer,
    clone,
)

OPEN, CLOSE = "\ue000", "\ue001"
MARKER = re.compile(f"{OPEN}(\\d+){CLOSE}")
# Around each value a fragment prints into the document: what is between them is the
# customer's, the rest is the template's (the *shape* of that customer's output).
VALUE_OPEN, VALUE_CLOSE = "\ue002", "\ue003"
VALUE = re.compile(f"{VALUE_OPEN}(.*?){VALUE_CLOSE}", re.S)
PRIVATE = re.compile("[\ue000-\ue003]")
# customer fields that are part of the version key: constants for the skeleton
CONSTANT_FIELDS = frozenset({"locale"})


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
    where: str = ""        # the template line that prints it, for reports

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
    __getattr__ = _refuse  # type: ignore[assignment]
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
        self.tests = {name: self._wrap_test(name, t) for name, t in self.tests.items()}
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


class Ambiguous(Exception):
    """A value holds edition's private-use characters: its edition is rendered whole."""


def delimit(value: Any) -> str:
    """A value a fragment prints, between the marks that tell it from the template's text."""
    text = str(value)
    if PRIVATE.search(text):
        raise Ambiguous("a value holds edition's private-use characters")
    return f"{VALUE_OPEN}{text}{VALUE_CLOSE}"


class DelimitingCodeGenerator(BoundedCodeGenerator):
    """Compiles a fragment so that each value it prints straight into the document is
    marked (VALUE_OPEN … VALUE_CLOSE); text it builds up first (a macro's, a filter
    block's) stays one value, or the template's."""

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if frame.buffer is None:
            self.write("environment.delimit(")
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        super()._output_child_post(node, frame, finalize)
        if frame.buffer is None:
            self.write(")")


def fragment_template(fragment: Fragment, env: EditionEnvironment) -> Any:
    """The fragment as a template of `env` (the customers' environment), compiled once."""
    key = ("fragment", fragment)
    template = env.compiled.get(key)  # type: ignore[call-overload]
    if template is None:
        tree = nodes.Template(clone(fragment.body), lineno=1)
        tree.set_environment(env)
        generator = DelimitingCodeGenerator(env, fragment.name, fragment.filename,
                                            optimized=env.optimized)
        generator.visit(tree)
        code = env._compile(generator.stream.getvalue(), fragment.filename or "<template>")
        env.delimit = delimit  # type: ignore[attr-defined]
        template = env.template_class.from_code(env, code, env.make_globals(None))
        env.compiled[key] = template  # type: ignore[index]
    return template


@dataclass(eq=False)
class Piece:
    """A statement that reads the customer, and what it can see where it stands."""

    fragment: Fragment
    values: dict[str, Any]

    @property
    def where(self) -> str:
        return self.fragment.where

    def __repr__(self) -> str:
        return f"<piece {self.fragment.where}>"

    def output(self, view: CustomerView, env: EditionEnvironment, limit: int) -> str:
        """What the statement writes for this customer, its printed values marked."""
        template = fragment_template(self.fragment, env)
        values = dict(self.values)
        values["customer"] = view
        out, size = [], 0
        for chunk in template.root_render_func(template.new_context(values, shared=True)):
            size += len(chunk)
            if size > limit:
                raise DocumentTooLarge(f"the document passed {limit:,} bytes")
            out.append(chunk)
        return "".join(out)


def unmarked(output: str) -> str:
    """A fragment's output as the document has it."""
    if VALUE_OPEN not in output:
        return output
    return output.replace(VALUE_OPEN, "").replace(VALUE_CLOSE, "")


@dataclass
class Layout:
    """One customer's document cut into the template's text and the customer's values.

    `statics` has one more entry than `values`. `key` tells customers whose statements
    wrote the same text apart from the others (a branch taken, a loop's length): they
    share one shape, inlined (and laid out for PDF) once."""

    key: tuple[Any, ...]
    statics: list[str]
    values: list[str]
    where: list[str]    # per value: the template line it comes from

    def text(self) -> str:
        out = [self.statics[0]]
        for value, static in zip(self.values, self.statics[1:], strict=True):
            out += (value, static)
        return "".join(out)


@dataclass
class Residual:
    """One kind (page, text, subject) of one version: the skeleton's text, and between
    its parts the holes and pieces each customer fills."""

    parts: list[str]
    slots: list[Hole | Piece]

    @property
    def pieces(self) -> bool:
        return any(isinstance(s, Piece) for s in self.slots)

    def outputs(self, fields: Mapping[str, Any], view: CustomerView,
                env: EditionEnvironment) -> list[str]:
        """Each slot's output for one customer (a piece's with its values marked)."""
        limit = env.limits.document_bytes
        return [slot.output(fields, view, env) if isinstance(slot, Hole)
                else slot.output(view, env, limit) for slot in self.slots]

    def text(self, outputs: list[str], limit: int) -> str:
        out = [self.parts[0]]
        for slot, output, part in zip(self.slots, outputs, self.parts[1:], strict=True):
            out += (output if isinstance(slot, Hole) else unmarked(output), part)
        text = "".join(out)
        if len(text) > limit:
            raise DocumentTooLarge(f"the document passed {limit:,} bytes")
        return text

    def layout(self, outputs: list[str]) -> Layout:
        """The customer's document as template text and values (see Layout)."""
        statics = [self.parts[0]]
        values: list[str] = []
        where: list[str] = []
        key: list[Any] = []
        for i, (slot, output, part) in enumerate(zip(self.slots, outputs, self.parts[1:],
                                                     strict=True)):
            if isinstance(slot, Hole):
                values.append(output)
                where.append(slot.where)
                statics.append(part)
                continue
            text = unmarked(output)
            if _plain_text(text):   # no markup: to the HTML parser it is one value
                values.append(text)
                where.append(slot.where)
                statics.append(part)
                continue
            # The statement's own text is the shape; a value holding markup (a module's
            # body, a macro's output) is parsed as markup, so it is part of the shape too.
            cut = VALUE.split(output)
            shape = [cut[0]]
            statics[-1] += cut[0]
            for value, static in zip(cut[1::2], cut[2::2], strict=True):
                if _plain_text(value):
                    values.append(value)
                    where.append(slot.where)
                    statics.append(static)
                    shape.append("")
                else:
                    statics[-1] += value + static
                    shape[-1] += value
                shape[-1] += static
            key.append((i, tuple(shape)))
            statics[-1] += part
        return Layout(tuple(key), statics, values, where)


_MARKUP = re.compile(r"[<>\"']|&(?!(?:amp|lt|gt|#34|#39);)")


def _plain_text(text: str) -> bool:
    """Text an HTML parser reads as characters only, as an escaped value is read."""
    return not _MARKUP.search(text)


@dataclass
class SharedDocument:
    """A version's (or shape's) finished document: static parts, values between them.

    `order[i]` is the value that goes after `parts[i]`; `finish[i]` turns it into what it
    becomes in the finished document (e.g. after CSS inlining re-serializes the HTML),
    or None when it cannot, and the caller makes that customer's document another way.
    """

    parts: list[str]
    order: list[int]
    finish: list[Callable[[str], str | None]]

    def fill(self, values: list[str]) -> str | None:
        """The finished document for one customer's values, or None."""
        out = [self.parts[0]]
        for index, finish, part in zip(self.order, self.finish, self.parts[1:], strict=True):
            text = finish(values[index])
            if text is None:
                return None
            out += (text, part)
        return "".join(out)

    def failing(self, values: list[str]) -> int | None:
        """The first value `fill` cannot finish."""
        for index, finish in zip(self.order, self.finish, strict=True):
            if finish(values[index]) is None:
                return index
        return None


def split(output: str, slots: list[Hole | Piece]) -> Residual:
    """Cut a skeleton render at its markers."""
    pieces = MARKER.split(output)
    parts = pieces[0::2]
    order = [slots[int(i)] for i in pieces[1::2]]
    return Residual(parts, order)
