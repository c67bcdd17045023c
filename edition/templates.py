"""Template checks done before anything renders: syntax, sandbox escapes, includes."""

from __future__ import annotations

from pathlib import Path

from jinja2 import TemplateNotFound, TemplateSyntaxError, nodes

from edition.errors import ContentError
from edition.templating import EditionEnvironment, refused_attributes, syntax_error


def check_template(env: EditionEnvironment, name: str, root: Path,
                   seen: set[str] | None = None) -> ContentError | None:
    """Parse a template file (and what it extends/includes); the first problem, if any."""
    seen = seen if seen is not None else set()
    if name in seen:
        return None
    seen.add(name)
    file = f"templates/{name}"
    try:
        source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
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
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        target = node.template
        if isinstance(target, nodes.Const) and isinstance(target.value, str):
            if not (root / "templates" / target.value).is_file():
                return ContentError(f"template {target.value!r} not found", file, node.lineno)
            problem = check_template(env, target.value, root, seen)
            if problem:
                return problem
    return None


def check_source(env: EditionEnvironment, source: str, file: str, line: int,
                 what: str) -> ContentError | None:
    """Check an inline template (a campaign's subject, a module body)."""
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
    return None
