"""pydantic's errors in the words and at the lines of the file someone edits.

The shapes (campaign, front matter, a target's options) are pydantic models; `check`
validates a mapping read by the line-aware YAML loader (content/yamlfile.py) and turns
every error into a ContentError with the file and the line of the key it is about,
worded the way a marketer reads it: `unknown key 'colour' (did you mean ...?)`,
`count must be a whole number of at least 1`. A validator says what is wrong with
`fail` (its text is shown as it is), and may pass a ContentError of its own (a template
or a segment rule with its own file and line) through `failed`.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from edition.content.yamlfile import LineDict
from edition.errors import ContentError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[int | str, ...]   # where in a value: keys and list indexes, as pydantic says

AT = "edition_at"            # an error's context key: the key inside the value it is about
ERROR = "edition_error"      # an error's context key: a ContentError shown as it is
WHOLE = "edition_whole"      # an error's context key: the message already says where
SALVAGE = "edition_salvage"  # validation context: building the instance from what is right

REQUIRED = {
    "template": "template is required (a file in templates/)",
    "slots": "slots is required: e.g. articles: {kind: article, count: 3}",
}
# pydantic's own words for a wrong type, in the words of someone editing YAML
TYPE_WORDS = {
    "string_type": "must be text",
    "int_type": "must be a whole number", "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number", "float_parsing": "must be a number",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "list_type": "must be a list", "tuple_type": "must be a list",
    "frozen_set_type": "must be a list", "set_type": "must be a list",
    "dict_type": "must be a mapping", "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "date_type": "must be a date (YYYY-MM-DD)", "date_parsing": "must be a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "must be a date (YYYY-MM-DD)",
}


def fail(message: str, *, at: str | None = None, says_where: bool = False
         ) -> PydanticCustomError:
    """A validation error whose text is shown as it is; `at` names the key inside the
    checked value the error is about, so its line is that key's line. Unless
    `says_where`, the message is prefixed with where it is when it does not say so."""
    context: dict[str, str | bool] = {}
    if at is not None:
        context[AT] = at
    if says_where:
        context[WHOLE] = True
    return PydanticCustomError("edition", message, context or None)


def failed(error: ContentError) -> PydanticCustomError:
    """A ContentError found while validating (a template, a rule), kept with its own
    file and line."""
    return PydanticCustomError("edition", error.message, {ERROR: error})


def fail_all(errors: Iterable[tuple[Loc, PydanticCustomError | ErrorDetails]],
             value: object) -> None:
    """Raise every (location inside the value, error) at once; pydantic puts the
    location of the value being validated in front of each."""
    details = []
    for loc, error in errors:
        if isinstance(error, PydanticCustomError):
            details.append(InitErrorDetails(type=error, loc=loc, input=value))
        else:   # an error dict of another validation, passed on
            kind: str | PydanticCustomError = error["type"]
            if kind == "edition":
                kind = PydanticCustomError("edition", str(error["msg"]), error.get("ctx"))
            detail = InitErrorDetails(type=kind, loc=(*loc, *error["loc"]),
                                      input=error.get("input"))
            if error.get("ctx") and not isinstance(kind, PydanticCustomError):
                detail["ctx"] = error["ctx"]
            details.append(detail)
    if details:
        raise ValidationError.from_exception_data("edition", details)


def closest(word: str, choices: Sequence[str] | set[str], cutoff: float = 0.75) -> str | None:
    """The known name a typo most likely meant, if one is close enough."""
    names = sorted(str(c) for c in choices)
    match = difflib.get_close_matches(word, names, n=1, cutoff=cutoff)
    if match:
        return match[0]
    # difflib scores a swapped pair low in a short word (`kidn` for `kind`: 0.75)
    letters = sorted(word.lower())
    return next((n for n in names if len(n) > 2 and sorted(n.lower()) == letters), None)


def near_miss(word: str, known: Sequence[str] | set[str]) -> str | None:
    """The known key an unknown key misspells, or None when it reads as a key of its own.

    A known key with a word or a number of its own (`author_url`, `address_2`,
    `address2`) is a key of its own; `valid_untill` or `Title` is a typo.
    """
    if word in known:
        return None
    for name in known:
        if re.fullmatch(rf"(?:\w+[_-])?{re.escape(name)}(?:[_-]\w+|\d+)?", word):
            return None
    return closest(word, known, cutoff=0.8)


def _location(error: ErrorDetails) -> Loc:
    """Where in the data an error is: its loc, and the key inside the value it names."""
    at = (error.get("ctx") or {}).get(AT)
    return (*error["loc"], at) if at is not None else tuple(error["loc"])


def _in_data(data: object, loc: Sequence[int | str]) -> list[int | str]:
    """The part of `loc` that names keys of the data (pydantic adds union tags and
    `[key]` markers that the YAML does not have)."""
    path: list[int | str] = []
    node = data
    for part in loc:
        # two branches with one body, so that the type checker narrows each
        if isinstance(node, dict) and part in node:  # noqa: SIM114
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            break
        path.append(part)
    return path


def line_of(data: object, loc: Sequence[int | str], *, inside: bool = False) -> int:
    """The YAML line of the deepest key of `loc` that the data knows; with `inside`, a
    location that is a whole nested mapping is its first line (a block's own check:
    `dkim needs exactly one of …` points into the dkim block)."""
    line = data.start_line if isinstance(data, LineDict) else 1
    node = data
    for depth, part in enumerate(loc):
        if isinstance(node, LineDict) and part in node:
            line = node.line_of(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return line
        if inside and depth == len(loc) - 1 and isinstance(node, LineDict) and node:
            line = node.start_line
    return line


def _unwrap(annotation: object) -> tuple[object, bool]:
    """(the model inside `X | None`, `dict[str, X]` or `tuple[X, ...]`, whether a key of
    the mapping comes next in a location)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        return _unwrap(args[1])[0], True
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _unwrap(args[0])[0], True   # a mapping in the file, by name (slots)
    values = [a for a in args if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(values) == 1:
        return _unwrap(values[0])
    if origin is typing.Annotated:
        return _unwrap(args[0])
    return annotation, False


def _nested(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class that validates the value at `loc` (for its list of known keys)."""
    current: object = model
    skip_key = False
    for part in loc:
        if skip_key:
            skip_key = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(str(part))
        if info is None:
            return None
        current, skip_key = _unwrap(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _own_message(message: str, path: list[str], says_where: bool) -> str:
    """A validator's own words, with where it is unless they already say so."""
    if says_where or len(path) < 2 or message.startswith(path[0]):
        return message    # top level, or the message already says where it is
    if message.startswith(path[-1]):
        return f"{'.'.join(path[:-1])}: {message}"   # `slots.offer: count must be …`
    return f"{'.'.join(path)}: {message}"


def _unknown_key(model: type[BaseModel], loc: list[int | str], path: list[str],
                 extra_word: str) -> str:
    key = path[-1] if path else str(loc[-1])
    parent = _nested(model, loc[:-1]) if len(loc) > 1 else model
    known = sorted(parent.model_fields) if parent else []
    hint = closest(key, known) if known else None
    if len(path) <= 1:
        if extra_word == "key":
            return f"unknown key {key!r}" + (f" (did you mean {hint!r}?)" if hint else "")
        return (f"unknown {extra_word} {key!r} (known: {', '.join(known)})"
                + (f"; did you mean {hint!r}?" if hint else ""))
    return f"{'.'.join(path[:-1])}: unknown key {key!r}" + (
        f" (did you mean {hint!r}?)" if hint else
        f" (known: {', '.join(known)})" if known else "")


def message(model: type[BaseModel], data: object, error: ErrorDetails,
            extra_word: str = "key") -> str:
    """One error in the words of someone editing the file: where (`slots.offer`), what,
    and for a misspelt key the key it most likely meant."""
    kind = error["type"]
    loc = list(error["loc"])
    path = [str(p) for p in _in_data(data, loc)]
    if kind == "missing" and len(loc) == len(path) + 1:
        path.append(str(loc[-1]))
    where = ".".join(path)
    if kind == "edition":
        return _own_message(str(error["msg"]), path,
                            bool((error.get("ctx") or {}).get(WHOLE)))
    if kind == "extra_forbidden":
        return _unknown_key(model, loc, path, extra_word)
    if kind == "missing":
        return REQUIRED.get(where, f"{where} is required")
    if kind in TYPE_WORDS:
        return f"{where} {TYPE_WORDS[kind]}"
    return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"


def content_errors(model: type[BaseModel], data: object, errors: list[ErrorDetails], file: str,
                   extra_word: str = "key") -> list[ContentError]:
    """Every pydantic error as a ContentError with its file and line."""
    found = []
    for error in errors:
        own = (error.get("ctx") or {}).get(ERROR)
        found.append(own if isinstance(own, ContentError) else ContentError(
            message(model, data, error, extra_word), file,
            line_of(data, _location(error), inside=error["type"] == "edition")))
    return found


def check(model: type[M], data: Mapping[str, object], file: str, *,
          extra_word: str = "key", context: object = None,
          salvage: bool = True) -> tuple[M | None, list[ContentError]]:
    """Validate `data` against `model`; (instance or None, every error with its line).

    When some keys are wrong the others are still validated: with `salvage` the
    instance is built from what is right (`_salvage`), so later checks go on and report
    their own problems instead of stopping at the first wrong value.
    """
    try:
        return model.model_validate(data, context=context), []
    except ValidationError as exc:
        errors = exc.errors()
    found = content_errors(model, data, errors, file, extra_word)
    return (_salvage(model, data, errors) if salvage else None), found


def _salvage(model: type[M], data: Mapping[str, object],
             errors: list[ErrorDetails]) -> M | None:
    """The instance without the wrong values: each is dropped (its default takes its
    place; a mapping that misses a required key goes as a whole), again until it holds."""
    partial = _copy(data)
    context = {SALVAGE: True}
    for _ in range(8):   # each round drops at least one key; nesting is a few levels deep
        if not _drop(partial, errors):
            break
        try:
            return model.model_validate(partial, context=context)
        except ValidationError as exc:
            errors = exc.errors()
    try:
        return model.model_validate({}, context=context)
    except ValidationError:
        return None


def _copy(data: object) -> object:
    if isinstance(data, dict):
        return {k: _copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_copy(v) for v in data]
    return data


def _drop(data: object, errors: list[ErrorDetails]) -> bool:
    """Remove from `data` what the errors are about; False when nothing could be."""
    paths = set()
    for error in errors:
        path = _in_data(data, error["loc"])
        # a list goes whole: the checks here take or refuse lists whole
        ints = [i for i, part in enumerate(path) if isinstance(part, int)]
        if ints:
            path = path[:ints[0]]
        if path:    # for `missing`, the mapping without the required key
            paths.add(tuple(path))
    dropped = False
    for where in sorted(paths, key=len, reverse=True):
        node: object = data
        for part in where[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and where[-1] in node:
            del node[where[-1]]
            dropped = True
    return dropped
