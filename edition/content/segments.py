"""Segments: named rules over a customer's fields, compiled once per campaign."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jinja2 import Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Context

from edition.content.environment import CustomerView, EditionEnvironment, refused_attributes
from edition.errors import ContentError


@dataclass
class Segment:
    """A named rule; `evaluate` returns (member?, missing field or None)."""

    name: str
    expression: str
    compiled: Template

    def evaluate(self, context: Context) -> tuple[bool, str | None]:
        """Run the rule in a Jinja context that holds the customer's fields and `customer`."""
        try:
            context.vars.pop("result", None)
            for _ in self.compiled.root_render_func(context):
                pass
            return bool(context.vars["result"]), None
        except UndefinedError as exc:
            # A rule over a field the customer lacks is false for that customer; the
            # report counts how often, so a typo in a field name does not go unnoticed.
            return False, _field_of(exc)
        except SecurityError:
            return False, "refused by the sandbox"
        except (TypeError, ValueError, ArithmeticError) as exc:
            return False, f"error: {exc}"


def _field_of(exc: UndefinedError) -> str:
    message = str(exc)
    if "'" in message:
        parts = message.split("'")
        # "'x' is undefined" or "customer has no field 'x'" both quote the name
        return parts[-2] if message.endswith("'") else parts[1]
    return message


def compile_segment(env: EditionEnvironment, name: str, expression: object, file: str,
                    line: int) -> Segment:
    """Compile one rule; a syntax error or a sandbox escape names the campaign line."""
    if not isinstance(expression, str | bool | int) or isinstance(expression, bool):
        raise ContentError(f"segment {name!r}: the rule must be an expression string", file, line)
    source = str(expression)
    try:
        tree = env.parse("{{ " + source + " }}")
        env.compile_expression(source)  # the syntax error, if any, of the rule alone
        # A template that stores the rule's value: one Jinja context per customer then
        # serves every rule (building a context costs 4x more than running a rule).
        compiled = env.rules.from_string("{% set result = (" + source + "\n) %}")
    except TemplateSyntaxError as exc:
        raise ContentError(f"segment {name!r}: bad rule {source!r}: {exc.message}",
                           file, line) from None
    refused = refused_attributes(tree)
    if refused:
        raise ContentError(
            f"segment {name!r}: access to {refused[0][0]!r} is refused by the sandbox",
            file, line)
    return Segment(name, source, compiled)


class Segmenter:
    """Evaluates every segment of a campaign for one customer."""

    def __init__(self, segments: Sequence[Segment]):
        self.segments = segments

    def assign(self, fields: Mapping[str, object]) -> tuple[tuple[str, ...], dict[str, str]]:
        """The customer's segments (campaign order) and, per failed rule, the missing field."""
        members: list[str] = []
        missing: dict[str, str] = {}
        if not self.segments:
            return (), missing
        variables = dict(fields)
        variables["customer"] = CustomerView(fields)
        context = self.segments[0].compiled.new_context(variables)
        for segment in self.segments:
            member, problem = segment.evaluate(context)
            if member:
                members.append(segment.name)
            elif problem:
                missing[segment.name] = problem
        return tuple(members), missing


REQUIRED_KINDS = ("article", "offer")


@dataclass(frozen=True)
class Rule:
    """`audience:` or `exclude:`: segment names (any of them) or a compiled rule."""

    key: str                             # audience or exclude
    names: tuple[str, ...] = ()
    rule: Segment | None = None

    def matches(self, fields: Mapping[str, object], segments: Sequence[str],
                segmenter: Segmenter | None) -> tuple[bool, str | None]:
        """(matches?, the missing field that made the rule false, if one did)."""
        if self.rule is None:
            return bool(set(self.names) & set(segments)), None
        assert segmenter is not None
        members, missing = segmenter.assign(fields)
        return bool(members), missing.get(self.rule.name)

    def words(self) -> str:
        if self.rule is None:
            return f"segment(s) {', '.join(self.names)}"
        return f"rule {self.rule.expression!r}"
