"""Template checks done before anything renders: syntax, sandbox escapes, includes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jinja2 import Environment, TemplateNotFound, TemplateSyntaxError, meta, nodes

from edition.content.environment import EditionEnvironment, refused_attributes, syntax_error
from edition.errors import ContentError


def check_template(env: EditionEnvironment, name: str, root: Path,
                   seen: set[str] | None = None) -> ContentError | None:
    """Parse a template file (and what it extends/includes); the first problem, if any."""
    seen = seen if seen is not None else set()
    if name in seen:
        return None
    seen.add(name)
    file = f"templates/{name}"
    try:
        assert env.loader is not None   # an edition environment always has one
        source, _, _ = env.loader.get_source(env, name)
    except TemplateNotFound:
        return ContentError(f"template {name!r} not found", file)
    try:
        tree = env.parse(source, name, file)
    except TemplateSyntaxError as exc:
        return syntax_error(exc, file)
    refused = refused_attributes(tree)
    if refused:
        attr, line = refused[0]
        return ContentError(f"access to {attr!r} is refused by the sandbox", file, line)
    problem = _compiles(env, source, name, file, 1)
    if problem:
        return problem
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        assert isinstance(node, nodes.Extends | nodes.Include | nodes.Import
                          | nodes.FromImport)   # what find_all found: for the type checker
        target = node.template
        if getattr(node, "ignore_missing", False):
            continue  # `{% include 'x' ignore missing %}`: missing is allowed
        if isinstance(target, nodes.Const) and isinstance(target.value, str):
            inside = (root / "templates" / target.value).resolve()
            if not inside.is_relative_to((root / "templates").resolve()) or not inside.is_file():
                return ContentError(f"template {target.value!r} not found in templates/",
                                    file, node.lineno)
            problem = check_template(env, target.value, root, seen)
            if problem:
                return problem
    return None


def check_source(env: EditionEnvironment, source: str, file: str, line: int,
                 what: str, *, module_body: bool = False) -> ContentError | None:
    """Check an inline template (a campaign's subject, a module body).

    A module body is content, not a template: it may read the personal layer and use
    conditions and loops, but it may not switch escaping off (`| safe`, `autoescape`),
    nor pull in other files (`include`, `import`, `extends`).
    """
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        return ContentError(f"{what}: template syntax error: {exc.message}", file,
                            line + (exc.lineno or 1) - 1)
    refused = refused_attributes(tree)
    if refused:
        attr, at = refused[0]
        return ContentError(f"{what}: access to {attr!r} is refused by the sandbox", file,
                            line + at - 1)
    if module_body:
        for node in tree.find_all((nodes.Filter, nodes.Extends, nodes.Include, nodes.Import,
                                   nodes.FromImport, nodes.EvalContextModifier)):
            if isinstance(node, nodes.Filter) and node.name != "safe":
                continue
            word = (f"the filter {node.name!r}" if isinstance(node, nodes.Filter)
                    else "autoescape" if isinstance(node, nodes.EvalContextModifier)
                    else type(node).__name__.lower())
            return ContentError(f"{what}: {word} is not allowed in a module (module HTML is "
                                f"sanitized, and customer values are escaped)", file,
                                line + node.lineno - 1)
    return _compiles(env, source, None, file, line, what)


def _compiles(env: EditionEnvironment, source: str, name: str | None, file: str, line: int,
              what: str = "") -> ContentError | None:
    """Compiling finds what parsing does not: an unknown filter or test."""
    try:
        env.compile(source, name=name)
    except TemplateSyntaxError as exc:
        prefix = f"{what}: " if what else ""
        return ContentError(f"{prefix}{exc.message}", file, line + (exc.lineno or 1) - 1)
    return None


def slots_used(env: Environment, names: Sequence[str], template_names: Sequence[str]) -> set[str]:
    """Which of the slot names the templates read (a slot no template shows is not required)."""
    used: set[str] = set()
    for name in template_names:
        assert env.loader is not None   # an edition environment always has one
        source, _, _ = env.loader.get_source(env, name)
        used |= meta.find_undeclared_variables(env.parse(source)) & set(names)
    return used
