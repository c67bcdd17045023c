"""Partial evaluation: a template split into what a version decides and what a customer does.

A version's constants (template, locale, segments, modules, campaign, run date, and the
customer fields the version key holds, such as `locale`) decide most of a template. This
module reads the template's AST once and rewrites it for the *skeleton* render, which
runs once per version: every statement (or printed expression) that reads the customer
is cut out as a `Fragment` and replaced by a call that leaves a marker in the output and
remembers the values the statement can see there (its loop variables, `{% set %}`
names, the context). Per customer each fragment is compiled from the original AST and
run with those values and the customer's fields: the *residual*, applied per customer.
Jinja evaluates both halves, so each edition is byte for byte the whole render.

What reads the customer: `customer` itself (but `customer.locale`, a version constant),
names set from it or under a test on it (`{% set n = customer.nick %}`, a `{% set %}`
inside `{% if customer.vip %}`, `ns.total` grown in a loop over `customer.orders`), calls
of macros whose body reads it, and imports of them. A fragment that reads such a name
first runs the statements that set it (their output dropped). A printed
`customer.x | filter(...)` is left to the probe (edition.render.personal), which
replays it faster than a fragment.

Whatever this cannot express exactly (a `{% block %}`, `self` or `super()` under a
test on the customer; a cycler or joiner it would advance) leaves a call that stops
the skeleton render with the reason and the line: that template is then rendered whole
for each customer, as before, and the report names the line.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

from jinja2 import nodes

from edition.render.template_ast import (
    assigned_names,
    clone,
    exported_names,
    free_names,
    mutated_namespaces,
    namespaces_assigned,
    sets_tainted,
    setting_only,
    walk,
)

CUSTOMER = "customer"
RESIDUAL = "__edition_residual__"
UNSHAREABLE = "__edition_unshareable__"
POISON = "__edition_poison__"
# names Jinja gives a meaning of its own inside a template: never captured
SPECIAL = frozenset({"self", "super", "caller", "varargs", "kwargs", RESIDUAL, UNSHAREABLE,
                     POISON})
# methods that change the object they are called on: a fragment must not, since the
# object is shared by every customer of the version
MUTATORS = frozenset({"append", "extend", "insert", "pop", "remove", "clear", "update",
                      "setdefault", "popitem", "add", "discard", "sort", "reverse",
                      "next", "reset"})
@dataclass(eq=False)
class Fragment:
    """One statement that reads the customer, with what it needs to run on its own."""

    id: int
    body: list[nodes.Node]      # definitions it needs, then the statement
    name: str | None            # the template's name (decides autoescape)
    filename: str | None
    line: int
    where: str                  # `templates/x.html.j2:12`, for reports


@dataclass
class _Definition:
    """A statement that (re)binds a name, and where it stands."""

    order: int
    scope: tuple[int, ...]
    statement: nodes.Node | None   # None: bound by a loop or a parameter
    tainted: bool


@dataclass
class _Scope:
    chain: tuple[int, ...]
    definitions: dict[str, list[_Definition]] = field(default_factory=dict)
    # the outermost `{% if %}` the walk is in (its original copy): a name set under it
    # is set only when its test holds, so a fragment re-runs the whole `if`
    guard: nodes.Node | None = None


class Residualizer:
    """Rewrites one template's AST for the skeleton render; registers its fragments."""

    _ids = itertools.count(1)

    def __init__(self, *, name: str | None, filename: str | None, where: str,
                 constants: frozenset[str], register: Callable[[Fragment], int],
                 macro_reads: Callable[[str], frozenset[str] | None] | None = None,
                 checked_filters: Callable[[str], bool] | None = None):
        self.name = name
        self.filename = filename
        self.where = where
        self.constants = constants
        self.register = register
        self.macro_reads = macro_reads        # imported template -> its macros that read
        self.checked_filters = checked_filters or (lambda name: True)
        self.tainted: set[str] = set()        # names whose value depends on the customer
        self.macros: dict[str, nodes.Macro] = {}
        self.tainted_macros: set[str] = set()
        self.imports: dict[str, nodes.Node] = {}   # name -> the import statement
        self.order = itertools.count()
        self.scopes: list[_Scope] = []
        # enclosing {% autoescape %} blocks (jinja parses them as ScopedEvalContextModifier)
        self.modifiers: list[nodes.ScopedEvalContextModifier] = []

    # -- entry -----------------------------------------------------------------------

    def transform(self, tree: nodes.Template) -> nodes.Template:
        self._collect_macros(tree.body)
        self.scopes = [_Scope((0,))]
        tree.body = self._statements(tree.body)
        return tree

    def _collect_macros(self, body: list[nodes.Node]) -> None:
        """Top-level macros and imports; which macros read the customer (to a fixpoint)."""
        for node in body:
            if isinstance(node, nodes.Macro):
                self.macros[node.name] = node
            elif isinstance(node, nodes.Import):
                self.imports[node.target] = node
            elif isinstance(node, nodes.FromImport):
                for name in node.names:
                    self.imports[name[1] if isinstance(name, tuple) else name] = node
        changed = True
        while changed:
            changed = False
            for name, macro in self.macros.items():
                if name not in self.tainted_macros and self._reads(macro.body, macro=True):
                    self.tainted_macros.add(name)
                    changed = True

    # -- what reads the customer -------------------------------------------------------

    def _reads(self, node: nodes.Node | Iterable[nodes.Node], *, macro: bool = False) -> bool:
        """Does evaluating `node` read the customer (or a name set from it)?"""
        items = [node] if isinstance(node, nodes.Node) else list(node)
        for item in items:
            for sub in walk(item):
                if isinstance(sub, nodes.Name) and sub.ctx == "load":
                    if sub.name == CUSTOMER and not self._constant_read(item, sub):
                        return True
                    if sub.name in self.tainted and not macro:
                        return True
                    if sub.name in self.tainted_macros:
                        return True
                elif isinstance(sub, nodes.Getattr) and isinstance(sub.node, nodes.Name):
                    reads = self._imported_reads(sub.node.name)
                    if reads and sub.attr in reads:
                        return True
                elif isinstance(sub, nodes.Name) and sub.ctx == "param":
                    continue
                elif isinstance(sub, nodes.ContextReference | nodes.DerivedContextReference):
                    return True   # an extension's own code: anything may happen there
        return False

    def _imported_reads(self, name: str) -> frozenset[str] | None:
        node = self.imports.get(name)
        if node is None or not isinstance(node, nodes.Import) or self.macro_reads is None:
            return None
        if not isinstance(node.template, nodes.Const):
            return frozenset({"*"})
        return self.macro_reads(str(node.template.value))

    def _from_import_reads(self, node: nodes.FromImport) -> set[str]:
        if self.macro_reads is None:
            return set()
        if not isinstance(node.template, nodes.Const):
            return {n[1] if isinstance(n, tuple) else n for n in node.names}
        reads = self.macro_reads(str(node.template.value)) or frozenset()
        found = set()
        for item in node.names:
            source, alias = (item if isinstance(item, tuple) else (item, item))
            if source in reads or "*" in reads:
                found.add(alias)
        return found

    def _constant_read(self, root: nodes.Node, name: nodes.Name) -> bool:
        """Is this `customer` the object of `customer.locale` (a version constant)?"""
        for sub in walk(root):
            if isinstance(sub, nodes.Getattr) and sub.node is name:
                return sub.attr in self.constants
            if isinstance(sub, nodes.Getitem) and sub.node is name:
                return isinstance(sub.arg, nodes.Const) and sub.arg.value in self.constants
        return False

    def _probe_can_replay(self, expr: nodes.Expr) -> bool:
        """`customer.x` through filters with constant arguments: the probe's holes."""
        while isinstance(expr, nodes.Filter):
            if expr.node is None or not self.checked_filters(expr.name):
                return False
            if self._reads([*expr.args, *expr.kwargs,
                            *(n for n in (expr.dyn_args, expr.dyn_kwargs) if n)]):
                return False
            expr = expr.node
        if isinstance(expr, nodes.Getattr | nodes.Getitem) and isinstance(expr.node, nodes.Name):
            if expr.node.name != CUSTOMER:
                return False
            return isinstance(expr, nodes.Getattr) or (
                isinstance(expr.arg, nodes.Const) and isinstance(expr.arg.value, str))
        return False

    # -- statements --------------------------------------------------------------------

    def _statements(self, body: list[nodes.Node]) -> list[nodes.Node]:
        out: list[nodes.Node] = []
        for node in body:
            out.extend(self._statement(node))
        return out

    def _statement(self, node: nodes.Node) -> list[nodes.Node]:
        if isinstance(node, nodes.Output):
            return [self._output(node)]
        if isinstance(node, nodes.Macro):
            return [node]   # defined as it is; calls that read the customer are fragments
        if isinstance(node, nodes.Import | nodes.FromImport):
            if isinstance(node, nodes.FromImport):
                self.tainted_macros |= self._from_import_reads(node)
            self._define(assigned_names(node), node, tainted=False)
            return [node]
        if isinstance(node, nodes.Assign | nodes.AssignBlock):
            return self._assign(node)
        if isinstance(node, nodes.Extends):
            if self._reads(node.template):
                return [self._refuse(node, "the layout it extends depends on the customer")]
            return [node]
        if isinstance(node, nodes.Block):
            return [self._in_scope(node, lambda: setattr(
                node, "body", self._statements(node.body)))]
        if not self._reads(node) and not sets_tainted(node, self.tainted):
            return self._constant_statement(node)
        if self._constant_control(node):
            # `{% if campaign.preferences_url %}…{{ customer.preferences_url }}…{% endif %}`
            # or a loop over the version's articles printing the customer's id: the version
            # decides the branch or the items, and only what reads the customer inside is
            # cut out (a hole or a smaller fragment), not the whole statement per customer
            return self._constant_statement(node)
        return self._fragment(node)

    def _constant_control(self, node: nodes.Node) -> bool:
        """An `if` or `for` the version decides (its tests and items read no customer),
        whose body only prints what reads the customer: no name or namespace is set from
        it there (a later statement would need the whole statement run again), and no
        loop inside is recursive or filtered by the customer."""
        if isinstance(node, nodes.If):
            decided = [node.test, *(branch.test for branch in node.elif_)]
            bodies = [*node.body, *(n for b in node.elif_ for n in b.body), *node.else_]
        elif isinstance(node, nodes.For):
            if node.recursive:
                return False
            decided = [node.iter, node.target, *([node.test] if node.test else [])]
            bodies = [*node.body, *node.else_]
        else:
            return False
        if self._reads(decided) or sets_tainted(node, self.tainted):
            return False
        for statement in bodies:
            for sub in walk(statement):
                if isinstance(sub, nodes.Assign | nodes.AssignBlock | nodes.With
                              | nodes.NSRef | nodes.Macro | nodes.CallBlock
                              | nodes.Import | nodes.FromImport) and self._reads(sub):
                    return False
                if isinstance(sub, nodes.NSRef | nodes.Block | nodes.Extends):
                    return False
                if isinstance(sub, nodes.For) and (sub.recursive or self._reads(
                        [sub.iter, *([sub.test] if sub.test else [])])):
                    return False
        return True

    def _constant_statement(self, node: nodes.Node) -> list[nodes.Node]:
        """A statement the version decides: its bodies may still hold fragments."""
        if isinstance(node, nodes.If):
            scope = self.scopes[-1]
            outermost = scope.guard is None
            if outermost:
                scope.guard = clone(node)
            try:
                node.body = self._statements(node.body)
                for branch in node.elif_:
                    branch.body = self._statements(branch.body)
                node.else_ = self._statements(node.else_)
            finally:
                if outermost:
                    scope.guard = None
            return [node]
        if isinstance(node, nodes.For):
            def inside() -> None:
                self._define(assigned_names(node.target), None, tainted=False)
                node.body = self._statements(node.body)
            self._in_scope(node, inside)
            node.else_ = self._statements(node.else_)
            return [node]
        if isinstance(node, nodes.With):
            def with_body() -> None:
                for target, value in zip(node.targets, node.values, strict=False):
                    self._define(assigned_names(target), nodes.Assign(
                        clone(target), clone(value)), tainted=False)
                node.body = self._statements(node.body)
            self._in_scope(node, with_body)
            return [node]
        if isinstance(node, nodes.Scope | nodes.OverlayScope):
            self._in_scope(node, lambda: setattr(node, "body", self._statements(node.body)))
            return [node]
        if isinstance(node, nodes.ScopedEvalContextModifier | nodes.EvalContextModifier):
            scoped = cast(nodes.ScopedEvalContextModifier, node)   # the one with a body
            self.modifiers.append(scoped)
            try:
                scoped.body = self._statements(scoped.body)
            finally:
                self.modifiers.pop()
            return [node]
        return [node]

    def _in_scope(self, node: nodes.Node, work: Callable[[], None]) -> nodes.Node:
        self.scopes.append(_Scope((*self.scopes[-1].chain, id(node))))
        try:
            work()
        finally:
            self.scopes.pop()
        return node

    def _assign(self, node: nodes.Assign | nodes.AssignBlock) -> list[nodes.Node]:
        names = assigned_names(node.target)
        namespaces = namespaces_assigned(node.target)
        if not self._reads(node) and not self.tainted & namespaces:
            self._define(names | namespaces, node, tainted=False)
            return [node]
        # Run per customer (it may fail, as in the whole render), and again by every
        # statement that reads what it sets; the skeleton never runs it.
        return self._fragment(node)

    def _poison(self, name: str, node: nodes.Node) -> nodes.Node:
        return nodes.Assign(nodes.Name(name, "store", lineno=node.lineno),
                            self._call(POISON, [nodes.Const(name), nodes.Const(self._at(node))],
                                       node.lineno), lineno=node.lineno)

    def _define(self, names: Iterable[str], statement: nodes.Node | None, *,
                tainted: bool) -> None:
        scope = self.scopes[-1]
        if statement is not None and scope.guard is not None:
            statement = scope.guard
        order = next(self.order)
        for name in names:
            scope.definitions.setdefault(name, []).append(
                _Definition(order, scope.chain, statement, tainted))

    def _output(self, node: nodes.Output) -> nodes.Output:
        children = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData) or not self._reads(child) \
                    or self._probe_can_replay(child):
                children.append(child)
            else:
                replaced = self._fragment(nodes.Output([child], lineno=child.lineno))
                inner = replaced[0]
                assert isinstance(inner, nodes.Output)
                children.extend(inner.nodes)
        node.nodes = children
        return node

    # -- fragments ---------------------------------------------------------------------

    def _fragment(self, node: nodes.Node) -> list[nodes.Node]:
        """Cut `node` out: a marker in the skeleton, a fragment per customer."""
        problem = self._unsupported(node)
        if problem:
            return [self._refuse(node, problem)]
        exported = exported_names(node)
        namespaces = mutated_namespaces(node)
        original = clone(node)
        definitions = self._definitions_for(node)
        fragment_body = [*definitions, node]
        for modifier in reversed(self.modifiers):
            wrapper = copy.copy(modifier)
            wrapper.body = fragment_body
            fragment_body = [wrapper]
        free = sorted(free_names(fragment_body) - SPECIAL - {CUSTOMER})
        fragment = Fragment(0, fragment_body, self.name, self.filename, node.lineno or 1,
                            self._at(node))
        fragment.id = self.register(fragment)
        # What it sets is the customer's from here on: later readers are fragments too.
        if exported or namespaces:
            self._define(exported | namespaces, original, tainted=True)
            self.tainted |= exported | namespaces
        # The skeleton must not read what it sets (an include, a macro reading the context
        # would get a value of no customer): such a read stops it, and it renders whole.
        poisoned = [self._poison(n, node) for n in sorted(exported)]
        captured = nodes.Dict([nodes.Pair(nodes.Const(n), nodes.Name(n, "load"))
                               for n in free])
        marker = self._call(RESIDUAL, [nodes.Const(fragment.id), captured], node.lineno)
        return [nodes.Output([marker], lineno=node.lineno), *poisoned]

    def _definitions_for(self, node: nodes.Node) -> list[nodes.Node]:
        """The statements that set the customer-dependent names `node` reads, in order,
        cut down to setting those names (what they write, and other names, dropped)."""
        needed: dict[int, _Definition] = {}
        names: set[str] = set()
        pending = list(free_names([node]))
        chain = self.scopes[-1].chain
        while pending:
            name = pending.pop()
            if name in names or name not in self.tainted:
                continue
            names.add(name)
            # The innermost scope that binds the name decides its value here; a loop
            # variable or parameter there comes with the captured values.
            for scope in reversed(self.scopes):
                if chain[:len(scope.chain)] != scope.chain or name not in scope.definitions:
                    continue
                found = scope.definitions[name]
                last_bound = max((i for i, d in enumerate(found) if d.statement is None),
                                 default=-1)
                for definition in found[last_bound + 1:]:
                    needed[definition.order] = definition
                    pending.extend(free_names([definition.statement]))
                break
        statements = []
        seen: set[int] = set()
        for order in sorted(needed):
            statement = needed[order].statement
            if statement is not None and id(statement) not in seen:
                seen.add(id(statement))
                statements.append(setting_only(statement, names))
        macros = self._macros_for([node, *statements])
        return [*macros, *statements]

    def _macros_for(self, roots: list[nodes.Node]) -> list[nodes.Node]:
        """The template's own macros and imports that the fragment calls, defined again
        inside it (so that they run in the environment the fragment runs in)."""
        wanted: list[nodes.Node] = []
        seen: set[str] = set()
        pending = [n for n in free_names(roots)]
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in self.macros:
                wanted.append(self.macros[name])
                pending.extend(free_names([self.macros[name]]))
            elif name in self.imports and self.imports[name] not in wanted:
                wanted.append(self.imports[name])
        order = {id(n): i for i, n in enumerate([*self.imports.values(), *self.macros.values()])}
        unique = {id(n): n for n in wanted}
        return [clone(unique[i]) for i in sorted(unique, key=lambda i: order.get(i, 0))]

    def _unsupported(self, node: nodes.Node) -> str | None:
        for sub in walk(node):
            if isinstance(sub, nodes.Block):
                return "a {% block %} under a test on the customer"
            if isinstance(sub, nodes.Extends):
                return "an {% extends %} under a test on the customer"
            if isinstance(sub, nodes.Name) and sub.name in {"self", "super", "caller",
                                                            "varargs", "kwargs"} \
                    and sub.ctx == "load":
                return f"'{sub.name}' next to customer data"
            if isinstance(sub, nodes.Call) and isinstance(sub.node, nodes.Getattr) \
                    and sub.node.attr in MUTATORS:
                return f"a call of .{sub.node.attr}() next to customer data"
        return None

    def _refuse(self, node: nodes.Node, reason: str) -> nodes.Node:
        """A statement that stops the skeleton render: the template is rendered whole."""
        return nodes.Output([self._call(UNSHAREABLE, [nodes.Const(f"{self._at(node)}: {reason}")],
                                        node.lineno)], lineno=node.lineno)

    def _at(self, node: nodes.Node) -> str:
        return f"{self.where}:{node.lineno or 1}"

    @staticmethod
    def _call(name: str, args: list[nodes.Expr], lineno: int | None) -> nodes.Call:
        return nodes.Call(nodes.Name(name, "load", lineno=lineno), args, [], None, None,
                          lineno=lineno)
