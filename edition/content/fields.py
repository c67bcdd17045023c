"""Which customer fields a template prints, and when: an analysis of Jinja's AST.

design.md, "Safety": a missing or empty customer field is falsy and undefined when it is
*tested* (`{% if customer.x %}`, `is defined`, `| default(...)`, `or`, `in`, a loop over
it); it fails the customer only when it is *printed* (or computed with: `~`, `+`, `>`,
most filters) with nothing to fall back on. `prints` finds every such place in a
template, a subject or a module body, with the tests it sits under
(`{% if customer.first_name %}`, the `or` it is the fallback of); `Print.fails` says
whether one customer's fields make it fail. Preflight counts those customers per
template line before anything is rendered.

The analysis reads the template; it runs nothing. A test it cannot decide (one on
segments, locale or a module) counts as "may hold", so it may count a customer the
render would not reach, never the other way round.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sized
from dataclasses import dataclass
from typing import Any, Final

from jinja2 import nodes

CUSTOMER = "customer"
FALLBACK_FILTERS = frozenset({"default", "d"})
# a missing field goes through these as an empty list (Jinja's loop semantics): no failure
EMPTY_FILTERS = frozenset({"length", "count", "join"})
EQUALITY = frozenset({"eq", "ne", "in", "notin"})


class _Sentinel(enum.Enum):
    # an enum, so that the type checker narrows `value is MISSING`
    MISSING = "MISSING"   # the customer has no such field (or its cell is empty)
    UNKNOWN = "UNKNOWN"   # the analysis cannot tell (segments, locale, a module…)

    def __repr__(self) -> str:
        return self.name


MISSING: Final = _Sentinel.MISSING
UNKNOWN: Final = _Sentinel.UNKNOWN

# (a test, the value it has where the print happens); None: a `{% filter default %}` block's
# filter, which has no node and so tells nothing
Guard = tuple[nodes.Node | None, bool]


@dataclass(frozen=True)
class Print:
    """One place that prints (or computes with) a customer field, without a fallback."""

    field: str
    file: str
    line: int
    guards: tuple[Guard, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()   # `{% set name = customer.first_name %}`

    def reaches(self, fields: Mapping[str, object]) -> bool:
        """Whether a customer with these fields may get here (no test rules it out)."""
        if not self.guards:
            return True   # most places: called once per customer and place
        aliases = dict(self.aliases)

        def lookup(name: str) -> object:
            return fields.get(name, MISSING)

        return all(_holds(test, wanted, lookup, aliases) for test, wanted in self.guards)

    def fails(self, fields: Mapping[str, object]) -> bool:
        """Whether printing here fails the customer with these fields."""
        return self.field not in fields and self.reaches(fields)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def prints(tree: nodes.Template, file: str, *, first_line: int = 1,
           load: Callable[[str], tuple[nodes.Template, str] | None] | None = None
           ) -> list[Print]:
    """Every place in `tree` (and the templates it includes or extends, through `load`)
    that fails a customer who lacks the field it prints."""
    walker = _Walker(load)
    walker.template(tree, file, first_line, ())
    return walker.found


def _customer_read(expr: nodes.Node | None, whole: Iterable[str] = ()) -> str | None:
    """`customer.x` or `customer['x']`: the field's name."""
    if isinstance(expr, nodes.Getattr | nodes.Getitem) and isinstance(expr.node, nodes.Name) \
            and (expr.node.name == CUSTOMER or expr.node.name in whole):
        if isinstance(expr, nodes.Getattr):
            return expr.attr
        if isinstance(expr.arg, nodes.Const) and isinstance(expr.arg.value, str):
            return expr.arg.value
    return None


class _Walker:
    """Walks statements with the tests that enclose them; records `Print`s."""

    def __init__(self, load: Callable[[str], tuple[nodes.Template, str] | None] | None):
        self.load = load
        self.found: list[Print] = []
        self.aliases: dict[str, str] = {}     # a name set to a customer field
        self.whole: set[str] = set()          # a name set to `customer` itself
        self.file = ""
        self.offset = 0
        self.visiting: list[str] = []

    # -- templates and statements ----------------------------------------------------

    def template(self, tree: nodes.Template, file: str, first_line: int,
                 guards: tuple[Guard, ...]) -> None:
        if file in self.visiting:
            return   # a template that includes itself: once is enough
        saved = (self.file, self.offset)
        self.file, self.offset = file, first_line - 1
        self.visiting.append(file)
        try:
            self.statements(tree.body, guards)
        finally:
            self.visiting.pop()
            self.file, self.offset = saved

    def statements(self, body: Iterable[nodes.Node], guards: tuple[Guard, ...]) -> None:
        for node in body:
            self.statement(node, guards)

    def statement(self, node: nodes.Node, guards: tuple[Guard, ...]) -> None:
        if isinstance(node, nodes.Output):
            for expr in node.nodes:
                if not isinstance(expr, nodes.TemplateData):
                    self.value(expr, guards)
        elif isinstance(node, nodes.If):
            self.test(node.test, guards)
            self.statements(node.body, (*guards, (node.test, True)))
            rest = (*guards, (node.test, False))
            for branch in node.elif_:
                self.test(branch.test, rest)
                self.statements(branch.body, (*rest, (branch.test, True)))
                rest = (*rest, (branch.test, False))
            self.statements(node.else_, rest)
        elif isinstance(node, nodes.For):
            self.test(node.iter, guards)   # a loop over a missing field runs zero times
            self.forget(node.target)
            inside = (*guards, (node.iter, True))
            if node.test is not None:
                self.test(node.test, inside)
            self.statements(node.body, inside)
            self.statements(node.else_, guards)
        elif isinstance(node, nodes.Assign):
            self.assign(node.target, node.node, guards)
        elif isinstance(node, nodes.With):
            for target, value in zip(node.targets, node.values, strict=False):
                self.assign(target, value, guards)
            self.statements(node.body, guards)
        elif isinstance(node, nodes.Include | nodes.Extends):
            self.include(node.template, guards if isinstance(node, nodes.Include) else ())
        elif isinstance(node, nodes.ExprStmt):
            self.value(node.node, guards)
        else:
            # blocks, macros, call blocks, filter blocks, scopes: their statements count
            # where they stand (a macro's body as if called there)
            for child in node.iter_child_nodes():
                if isinstance(child, nodes.Stmt | nodes.Template):
                    self.statement(child, guards)
                elif isinstance(child, nodes.Expr):
                    self.value(child, guards)

    def assign(self, target: nodes.Node, value: nodes.Node, guards: tuple[Guard, ...]) -> None:
        self.forget(target)
        if not isinstance(target, nodes.Name):
            self.value(value, guards)
            return
        field = _customer_read(value, self.whole)
        if field is not None:
            self.aliases[target.name] = field     # fails where it is printed, not here
        elif isinstance(value, nodes.Name) and value.name == CUSTOMER:
            self.whole.add(target.name)
        else:
            self.value(value, guards)

    def forget(self, target: nodes.Node) -> None:
        for name in target.find_all(nodes.Name) if not isinstance(target, nodes.Name) \
                else [target]:
            self.aliases.pop(name.name, None)
            self.whole.discard(name.name)

    def include(self, template: nodes.Expr, guards: tuple[Guard, ...]) -> None:
        if self.load is None or not isinstance(template, nodes.Const) \
                or not isinstance(template.value, str):
            return
        loaded = self.load(template.value)
        if loaded is not None:
            tree, file = loaded
            self.template(tree, file, 1, guards)

    # -- expressions -----------------------------------------------------------------

    def add(self, field: str, node: nodes.Node, guards: tuple[Guard, ...]) -> None:
        found = Print(field, self.file, self.offset + (node.lineno or 1), guards,
                      tuple(sorted(self.aliases.items())))

        def alone(name: str) -> object:   # this field missing, everything else unknown
            return MISSING if name == field else UNKNOWN

        aliases = dict(found.aliases)
        if all(_holds(test, wanted, alone, aliases) for test, wanted in guards):
            self.found.append(found)   # else a test rules out the field being missing

    def field_of(self, expr: nodes.Node) -> str | None:
        field = _customer_read(expr, self.whole)
        if field is None and isinstance(expr, nodes.Name) and expr.ctx == "load":
            field = self.aliases.get(expr.name)
        return field

    def value(self, expr: nodes.Node, guards: tuple[Guard, ...]) -> None:
        """`expr`'s value is used (printed, computed with, passed on)."""
        field = self.field_of(expr)
        if field is not None:
            self.add(field, expr, guards)
        elif isinstance(expr, nodes.Filter) and expr.name in FALLBACK_FILTERS:
            if expr.node is not None:
                self.test(expr.node, guards)
            for arg in expr.args[:1]:
                self.value(arg, (*guards, _fallback(expr)))
        elif isinstance(expr, nodes.Filter | nodes.Test) and (
                expr.name in EMPTY_FILTERS or isinstance(expr, nodes.Test)):
            if expr.node is not None:
                self.test(expr.node, guards)
            self.values([*expr.args, *(k.value for k in expr.kwargs)], guards)
        elif isinstance(expr, nodes.Or):
            self.test(expr.left, guards)
            self.value(expr.right, (*guards, (expr.left, False)))
        elif isinstance(expr, nodes.And):
            self.test(expr.left, guards)
            self.value(expr.right, (*guards, (expr.left, True)))
        elif isinstance(expr, nodes.Not):
            self.test(expr.node, guards)
        elif isinstance(expr, nodes.CondExpr):
            self.test(expr.test, guards)
            self.value(expr.expr1, (*guards, (expr.test, True)))
            if expr.expr2 is not None:
                self.value(expr.expr2, (*guards, (expr.test, False)))
        elif isinstance(expr, nodes.Compare):
            self.compare(expr, guards)
        else:
            # getattr/getitem on a missing field, arithmetic, `~`, filters, calls: the
            # undefined value raises there
            self.values(expr.iter_child_nodes(), guards)

    def values(self, exprs: Iterable[nodes.Node], guards: tuple[Guard, ...]) -> None:
        for child in exprs:
            if isinstance(child, nodes.Expr):
                self.value(child, guards)
            elif isinstance(child, nodes.Helper):   # Keyword, Pair, Operand
                self.values(child.iter_child_nodes(), guards)

    def test(self, expr: nodes.Node, guards: tuple[Guard, ...]) -> None:
        """Only `expr`'s truth is used: a missing field there is simply false."""
        if self.field_of(expr) is not None:
            return
        if isinstance(expr, nodes.Not):
            self.test(expr.node, guards)
        elif isinstance(expr, nodes.And):
            self.test(expr.left, guards)
            self.test(expr.right, (*guards, (expr.left, True)))
        elif isinstance(expr, nodes.Or):
            self.test(expr.left, guards)
            self.test(expr.right, (*guards, (expr.left, False)))
        elif isinstance(expr, nodes.CondExpr):
            self.test(expr.test, guards)
            self.test(expr.expr1, (*guards, (expr.test, True)))
            if expr.expr2 is not None:
                self.test(expr.expr2, (*guards, (expr.test, False)))
        elif isinstance(expr, nodes.Filter) and expr.name in FALLBACK_FILTERS:
            if expr.node is not None:
                self.test(expr.node, guards)
            for arg in expr.args[:1]:
                self.test(arg, (*guards, _fallback(expr)))
        else:
            self.value(expr, guards)

    def compare(self, expr: nodes.Compare, guards: tuple[Guard, ...]) -> None:
        """`==`, `!=`, `in` are tests; `<`, `>`… on a missing field raise."""
        operands = [expr.expr, *(op.expr for op in expr.ops)]
        ordered = set()
        for i, op in enumerate(expr.ops):
            if op.op not in EQUALITY:
                ordered.update({i, i + 1})
        for i, operand in enumerate(operands):
            (self.value if i in ordered else self.test)(operand, guards)


def _fallback(default: nodes.Filter) -> Guard:
    """When `x | default(y)` prints y: x undefined (or, with `boolean=true`, falsy)."""
    flag = default.args[1] if len(default.args) > 1 else next(
        (k.value for k in default.kwargs if k.key == "boolean"), None)
    if isinstance(flag, nodes.Const) and flag.value:
        return (default.node, False)
    return (nodes.Test(default.node, "defined", [], [], None, None), False)


# -- three-valued evaluation of a guard for one customer --------------------------------


def _holds(test: nodes.Node | None, wanted: bool, lookup: Callable[[str], object],
           aliases: Mapping[str, str]) -> bool:
    """False only when the test surely does not have the wanted value."""
    value = _evaluate(test, lookup, aliases)
    if value is UNKNOWN:
        return True
    truth = _truth(value)
    return truth is UNKNOWN or truth == wanted


def _truth(value: object) -> bool | _Sentinel:
    if value is MISSING:
        return False
    try:
        return bool(value)
    except Exception:   # a value whose truth is its own business
        return UNKNOWN


def _evaluate(expr: nodes.Node | None, lookup: Callable[[str], object],
              aliases: Mapping[str, str]) -> object:
    """The value of a test for a customer (MISSING for a missing field), or UNKNOWN."""
    field = _customer_read(expr)
    if field is not None:
        return lookup(field)
    if isinstance(expr, nodes.Name):
        return lookup(aliases[expr.name]) if expr.name in aliases else UNKNOWN
    if isinstance(expr, nodes.Const):
        return expr.value
    if isinstance(expr, nodes.List | nodes.Tuple):
        items = [_evaluate(item, lookup, aliases) for item in expr.items]
        return UNKNOWN if any(i is UNKNOWN or i is MISSING for i in items) else items
    if isinstance(expr, nodes.Not):
        truth = _truth(_evaluate(expr.node, lookup, aliases))
        return UNKNOWN if truth is UNKNOWN else not truth
    if isinstance(expr, nodes.And | nodes.Or):
        left = _truth(_evaluate(expr.left, lookup, aliases))
        right = _truth(_evaluate(expr.right, lookup, aliases))
        decisive = isinstance(expr, nodes.Or)   # True decides `or`, False decides `and`
        if decisive in (left, right):
            return decisive
        return UNKNOWN if UNKNOWN in (left, right) else not decisive
    if isinstance(expr, nodes.Test):
        value = _evaluate(expr.node, lookup, aliases)
        if value is UNKNOWN:
            return UNKNOWN
        if expr.name == "defined":
            return value is not MISSING
        if expr.name == "undefined":
            return value is MISSING
        if expr.name == "none":
            return value is None
        return UNKNOWN
    if isinstance(expr, nodes.Filter):
        value = _evaluate(expr.node, lookup, aliases) if expr.node is not None else UNKNOWN
        if expr.name in FALLBACK_FILTERS:
            if value is MISSING:
                return _evaluate(expr.args[0], lookup, aliases) if expr.args else ""
            return value
        if expr.name in {"length", "count"} and value is not UNKNOWN:
            if value is MISSING:
                return 0
            try:
                return len(value) if isinstance(value, Sized) else UNKNOWN
            except TypeError:
                return UNKNOWN
        return UNKNOWN
    if isinstance(expr, nodes.CondExpr):
        truth = _truth(_evaluate(expr.test, lookup, aliases))
        if truth is UNKNOWN:
            return UNKNOWN
        branch = expr.expr1 if truth else expr.expr2
        return UNKNOWN if branch is None else _evaluate(branch, lookup, aliases)
    if isinstance(expr, nodes.Compare):
        return _compare(expr, lookup, aliases)
    return UNKNOWN


def _compare(expr: nodes.Compare, lookup: Callable[[str], object],
             aliases: Mapping[str, str]) -> object:
    left = _evaluate(expr.expr, lookup, aliases)
    for operand in expr.ops:
        right = _evaluate(operand.expr, lookup, aliases)
        if left is UNKNOWN or right is UNKNOWN:
            return UNKNOWN
        if MISSING in (left, right) and operand.op not in EQUALITY:
            return UNKNOWN   # `<` on a missing field raises: that is its own Print
        try:
            result = _OPERATORS[operand.op](left, right)
        except Exception:   # a comparison the customer's values do not support
            return UNKNOWN
        if not result:
            return False
        left = right
    return True


def _contains(container: Any, item: object) -> bool:   # untyped: `in` on a customer value
    if container is MISSING or item is MISSING:
        return False   # a missing field is empty, and is in nothing
    return item in container


# untyped: comparisons of whatever two customer values are (one that fails is UNKNOWN)
_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda a, b: a is b if MISSING in (a, b) else a == b,
    "ne": lambda a, b: a is not b if MISSING in (a, b) else a != b,
    "gt": lambda a, b: a > b, "gteq": lambda a, b: a >= b,
    "lt": lambda a, b: a < b, "lteq": lambda a, b: a <= b,
    "in": lambda a, b: _contains(b, a), "notin": lambda a, b: not _contains(b, a),
}
