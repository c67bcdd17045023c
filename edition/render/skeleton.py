"""A version's skeleton, and how each customer fills it.

The skeleton render (edition.render.personal) leaves private-use markers where a
customer's values go: a `Hole` (a field through filters, replayed per customer) or a
`Piece` (a statement that reads the customer, run per customer with what it could see).
`split` cuts the skeleton at its markers into a `Residual`; per customer it gives the
document's text, or its `Layout` (template text and values apart), which CSS inlining
and PDF lay out once per shape into a `SharedDocument`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.compiler import Frame
from jinja2.nodes import EvalContext
from jinja2.utils import _PassArg
from markupsafe import escape

from edition.content.environment import BoundedCodeGenerator, CustomerView, EditionEnvironment
from edition.content.limits import DocumentTooLarge
from edition.render.residual import Fragment
from edition.render.template_ast import clone

OPEN, CLOSE = "\ue000", "\ue001"
MARKER = re.compile(f"{OPEN}(\\d+){CLOSE}")
# Around each value a fragment prints into the document: what is between them is the
# customer's, the rest is the template's (the *shape* of that customer's output).
VALUE_OPEN, VALUE_CLOSE = "\ue002", "\ue003"
VALUE = re.compile(f"{VALUE_OPEN}(.*?){VALUE_CLOSE}", re.S)
PRIVATE = re.compile("[\ue000-\ue003]")


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
        source = generator.stream.getvalue()  # type: ignore[attr-defined]  # its StringIO
        code = env._compile(source, fragment.filename or "<template>")
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
