"""A newcomer's mistakes inside a campaign's nested settings (issue 17, finding 16).

A typo or a wrong type anywhere in a campaign, however deep (a slot, the schedule, the
footer, the delivery options, the suppression block, the limits), is one line of the
error list: `file:line: where: what (did you mean ...?)`, exit 2, never a traceback, and
every mistake of the file at once. The last test mutates every key of the sample
campaigns and of a newcomer's campaign (tests/corpus/garden-club), one at a time.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from edition.content.campaign import Campaign as CampaignConfig
from edition.content.yamlfile import LineDict, load_yaml

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "corpus" / "garden-club"
CAMPAIGN = "campaigns/allotment-news.yaml"


@pytest.fixture
def garden(tmp_path: Path) -> Path:
    """A copy of the newcomer's content tree (the test edits its campaign)."""
    root = tmp_path / "garden-club"
    shutil.copytree(CORPUS, root)
    return root


def edit(root: Path, old: str, new: str) -> int:
    """Replace one line's text in the campaign; the 1-based line it is on."""
    path = root / CAMPAIGN
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[:text.index(old)].count("\n") + 1


def assert_clean(rc: int, stderr: str) -> None:
    assert rc == 2, stderr
    assert "Traceback" not in stderr and "pydantic" not in stderr.lower(), stderr
    assert "Nothing was rendered" in stderr


def test_a_typo_inside_a_slot_names_its_line_and_the_key_it_meant(garden: Path, cli) -> None:
    line = edit(garden, "offer: {kind: offer, count: 1}", "offer: {kind: offer, cuont: 1}")
    for verb in ("validate", "run"):
        rc, _, stderr = cli(verb, CAMPAIGN, cwd=garden)
        assert_clean(rc, stderr)
        assert f"{CAMPAIGN}:{line}: slots.offer: unknown key 'cuont' (did you mean 'count'?)" \
            in stderr, stderr
        assert len(stderr.splitlines()) <= 3, stderr   # one message, not 40 lines
    assert not (garden / "out").exists()


def test_a_wrong_type_inside_a_slot_says_what_it_should_be(garden: Path, cli) -> None:
    line = edit(garden, "offer: {kind: offer, count: 1}", "offer: {kind: offer, count: one}")
    rc, _, stderr = cli("validate", CAMPAIGN, cwd=garden)
    assert_clean(rc, stderr)
    assert f"{CAMPAIGN}:{line}: slots.offer: count must be a whole number of at least 1" \
        in stderr, stderr


def test_mistakes_in_every_nested_block_are_listed_together(garden: Path, cli) -> None:
    lines = {
        edit(garden, "greeting: {kind: greeting, count: 1}",
             "greeting: {kind: greeting, count: 1, sort: priority}"): "slots.greeting: "
                                                                      "unknown key 'sort'",
        edit(garden, "articles: {kind: article, count: 2}",
             "articles: {kind: article, count: [2]}"): "slots.articles: count must be",
        edit(garden, 'schedule: {cron: "0 7 1 * *", timezone: Europe/London}',
             'schedule: {cron: "0 7 1 * *", tiemzone: Europe/London}'):
            "schedule: unknown key 'tiemzone' (did you mean 'timezone'?)",
        edit(garden, "  address: ", "  adress: "): "footer: unknown key 'adress' "
                                                   "(did you mean 'address'?)",
        edit(garden, "columns: {unsubscribed: opted_out}",
             "colums: {unsubscribed: opted_out}"): "suppression: unknown key 'colums' "
                                                   "(did you mean 'columns'?)",
        edit(garden, "limits: {render_seconds: 20}", "limits: {render_second: 20}"):
            "limits: unknown key 'render_second' (did you mean 'render_seconds'?)",
        edit(garden, "pdf: {page_size: A4}", "pdf: {page_size: A5}"): "pdf.page_size 'A5'",
    }
    # delivery options are checked against the target's own list
    lines[edit(garden, "delivery: {to: local, fsync: false}",
               "delivery: {to: local, fsinc: false}")] = \
        "delivery: unknown delivery option 'fsinc' (did you mean 'fsync'?)"
    rc, _, stderr = cli("validate", CAMPAIGN, cwd=garden)
    assert_clean(rc, stderr)
    assert f"{len(lines)} problems found" in stderr, stderr
    for line, message in lines.items():
        assert any(f"{CAMPAIGN}:{line}: {message}" in s for s in stderr.splitlines()), \
            (line, message, stderr)


# -- every key, mutated one at a time -----------------------------------------------------


def _typo(key: str) -> str:
    """A plausible slip of the finger: two letters swapped (or one left out)."""
    if len(key) < 3:
        return key[::-1] + "x" if key[::-1] == key else key[::-1]
    swapped = key[0] + key[2] + key[1] + key[3:]
    return swapped if swapped != key else key[0] + key[2:]


WRONG_SCALAR = [1, 2]          # where text, a number or a list of names is expected
WRONG_MAPPING = "oops"         # where a mapping is expected
# keys whose names are the team's own: their values are mutated, never their names
OWN_NAMES = {"segments", "slots", "subject", "currency", "fields"}
FOOTER_KEYS = ("address", "feedback_url", "phone")   # the footer keys templates know
MAPPINGS = {"slots", "segments", "delivery", "schedule", "footer", "fields", "limits", "pdf",
            "suppression", "columns"}


def mutations(data: LineDict) -> Iterator[tuple[str, list[Any], Any]]:
    """(what, path, change): change is ("rename", new key) or ("value", new value)."""
    for key, value in data.items():
        yield from _mutate([key], value, parent=None)


def _mutate(path: list[Any], value: Any, parent: str | None) -> Iterator[tuple[str, list[Any],
                                                                             Any]]:
    key = path[-1]
    own_name = parent in OWN_NAMES or (parent == "footer" and key not in FOOTER_KEYS)
    if not own_name:
        yield f"typo {'.'.join(map(str, path))}", path, ("rename", _typo(str(key)))
    if parent == "footer" and key not in FOOTER_KEYS:
        return   # a footer key of the team's own holds what they like
    if isinstance(value, dict) and not (parent == "slots" or key in MAPPINGS):
        return
    if isinstance(value, dict):
        yield f"wrong type {'.'.join(map(str, path))}", path, ("value", WRONG_MAPPING)
        for inner, item in value.items():
            yield from _mutate([*path, inner], item, parent=str(key))
    else:
        yield f"wrong type {'.'.join(map(str, path))}", path, ("value", WRONG_SCALAR)


def _apply(data: Any, path: list[Any], change: tuple[str, Any]) -> Any:
    plain = yaml.safe_load(yaml.safe_dump(_plain(data)))
    node = plain
    for part in path[:-1]:
        node = node[part]
    how, what = change
    if how == "rename":
        node[what] = node.pop(path[-1])
        path = [*path[:-1], what]
    else:
        node[path[-1]] = what
    return plain, path


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _campaigns() -> list[Path]:
    return [*sorted((REPO / "campaigns").glob("*.yaml")), CORPUS / CAMPAIGN]


@pytest.mark.parametrize("source", _campaigns(), ids=lambda p: p.stem)
def test_every_key_mistyped_or_mistyped_in_kind_is_a_clean_error(source: Path,
                                                                tmp_path: Path) -> None:
    """Each key of the campaign renamed (typo) or given a wrong type, one at a time: the
    CLI exits 2 naming the file and the line of that key, and never shows a traceback.

    Runs the CLI's own entry point in this process (a subprocess per mutation would take
    minutes); the finding's own cases above run the real command in a subprocess.
    """
    root = tmp_path / "site"
    if source.is_relative_to(CORPUS):
        shutil.copytree(CORPUS, root)
    else:   # the repository's templates; its modules play no part in these errors
        shutil.copytree(REPO / "templates", root / "templates")
        (root / "campaigns").mkdir()
    data = load_yaml(source.read_text(encoding="utf-8"), source.name)
    assert set(data) <= set(CampaignConfig.model_fields)   # the sample uses known keys only
    runner = CliRunner()
    found = list(mutations(data))
    assert len(found) > 20
    failures = []
    for n, (what, path, change) in enumerate(found):
        mutated, new_path = _apply(data, path, change)
        file = root / "campaigns" / f"{source.stem}-m{n}.yaml"
        text = yaml.safe_dump(mutated, sort_keys=False, allow_unicode=True)
        file.write_text(text, encoding="utf-8")
        rel = f"campaigns/{file.name}"
        line = _line(text, rel, new_path)
        result = runner.invoke(app, ["validate", str(file)], catch_exceptions=True,
                               env={"COLUMNS": "300", "NO_COLOR": "1"})
        output = result.output
        problems = []
        if result.exit_code != 2:
            problems.append(f"exit {result.exit_code}")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            problems.append(f"raised {result.exception!r}")
        if not re.search(rf"{re.escape(rel)}:{line}:", output):
            problems.append(f"no {rel}:{line}")
        if change[0] == "rename" and len(str(path[-1])) > 3 and "did you mean" not in output:
            problems.append("no 'did you mean'")
        if problems:
            failures.append(f"{what}: {', '.join(problems)}\n{text}\n{output}")
    assert not failures, f"{len(failures)} of {len(found)}:\n" + "\n".join(failures[:3])


def _line(text: str, file: str, path: list[Any]) -> int:
    node: Any = load_yaml(text, file)
    line = 1
    for part in path:
        line = node.line_of(str(part))
        node = node[part]
    return line
