"""What a template's AST sets, reads and changes: the questions partial evaluation
(edition.render.residual) asks of each statement, and a copy that keeps its environment.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jinja2 import nodes

__all__ = ["SCOPES", "assigned_names", "clone", "exported_names", "free_names",
           "mutated_namespaces", "namespaces_assigned", "sets_tainted", "setting_only", "walk"]

# statements that open a scope of their own for `{% set %}`
SCOPES = (nodes.For, nodes.With, nodes.Macro, nodes.CallBlock, nodes.Block,
          nodes.AssignBlock, nodes.FilterBlock, nodes.Scope, nodes.OverlayScope)


def clone(node: Any) -> Any:
    """A deep copy of nodes that shares their environment (a node points at it)."""
    if isinstance(node, list):
        return [clone(item) for item in node]
    if isinstance(node, tuple):
        return tuple(clone(item) for item in node)
    if not isinstance(node, nodes.Node):
        return node   # a constant's value, a name: never changed in place
    new = object.__new__(type(node))
    for name in node.fields:
        setattr(new, name, clone(getattr(node, name, None)))
    for name in node.attributes:
        setattr(new, name, getattr(node, name, None))
    return new


def walk(node: nodes.Node) -> Iterable[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from walk(child)


def assigned_names(node: nodes.Node) -> set[str]:
    if isinstance(node, nodes.Import):
        return {node.target}
    if isinstance(node, nodes.FromImport):
        return {n[1] if isinstance(n, tuple) else n for n in node.names}
    if isinstance(node, nodes.Name):
        return {node.name}
    return {n.name for n in node.find_all(nodes.Name) if n.ctx == "store"}


def namespaces_assigned(target: nodes.Node) -> set[str]:
    if isinstance(target, nodes.NSRef):
        return {target.name}
    return {n.name for n in target.find_all(nodes.NSRef)}


def exported_names(node: nodes.Node) -> set[str]:
    """Names a statement sets in the scope it stands in (not in loops or blocks it opens)."""
    found: set[str] = set()

    def visit(item: nodes.Node) -> None:
        if isinstance(item, nodes.Assign | nodes.AssignBlock):
            found.update(assigned_names(item.target))
            return
        if isinstance(item, nodes.Import | nodes.FromImport):
            found.update(assigned_names(item))
            return
        if isinstance(item, nodes.Macro):
            found.add(item.name)
            return
        if isinstance(item, SCOPES):
            return
        for child in item.iter_child_nodes():
            if isinstance(child, nodes.Stmt):
                visit(child)

    visit(node)
    return found


def mutated_namespaces(node: nodes.Node) -> set[str]:
    return {ref.name for ref in node.find_all(nodes.NSRef)} if not isinstance(
        node, nodes.NSRef) else {node.name}


def sets_tainted(node: nodes.Node, tainted: set[str]) -> bool:
    """A statement that changes a namespace the customer already changed."""
    return bool(mutated_namespaces(node) & tainted)


def setting_only(node: nodes.Node, keep: set[str]) -> nodes.Node:
    """A copy of the statement that only sets the names in `keep`: what it writes to the
    document, and what it sets otherwise, dropped."""
    copied: nodes.Node = clone(node)

    def wanted(child: nodes.Node) -> bool:
        if isinstance(child, nodes.Output | nodes.Include | nodes.CallBlock
                      | nodes.FilterBlock):
            return False
        if isinstance(child, nodes.Assign | nodes.AssignBlock):
            return bool((assigned_names(child.target) | namespaces_assigned(child.target)) & keep)
        if isinstance(child, nodes.Import | nodes.FromImport):
            return bool(assigned_names(child) & keep)
        return True

    def strip(item: nodes.Node) -> None:
        for name in item.fields:
            value = getattr(item, name, None)
            if isinstance(value, list) and value and isinstance(
                    value[0], nodes.Stmt | nodes.Helper):
                kept = [child for child in value if not isinstance(child, nodes.Stmt)
                        or wanted(child)]
                for child in kept:
                    if isinstance(child, nodes.Node) and not isinstance(
                            child, nodes.AssignBlock | nodes.Macro):
                        strip(child)
                setattr(item, name, kept)

    if isinstance(copied, nodes.Stmt) and not wanted(copied):
        return nodes.Scope([], lineno=node.lineno)
    strip(copied)
    return copied


def free_names(roots: Iterable[nodes.Node | None]) -> set[str]:
    """Names the statements load (a superset of what they read from outside)."""
    found: set[str] = set()
    for root in roots:
        if root is None:
            continue
        for sub in walk(root):
            if (isinstance(sub, nodes.Name) and sub.ctx == "load") or isinstance(sub, nodes.NSRef):
                found.add(sub.name)
    return found
