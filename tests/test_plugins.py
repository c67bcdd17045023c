"""Plugins describe themselves: a delivery target or a customer source is one module and
one entry point, and the engine learns everything it needs from the registry.

The out-of-tree plugins here are installed the way a package installs them: a module
and a `*.dist-info/entry_points.txt` on the Python path of the real `edition` command.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures_sending import (  # noqa: F401 (fixtures)
    customer_rows,
    customers,
    edition,
    manifest,
    run_args,
    set_delivery,
    site,
)

from edition.content.plugins import (
    SourceOptions,
    TargetOptions,
    source_plugins,
    target_plugins,
)
from edition.errors import DeliveryError
from publishers.base import BasePublisher

REPO = Path(__file__).resolve().parents[1]


def test_a_target_whose_open_fails_is_closed() -> None:
    """Django's mail backends close what `open` opened when it fails half-way; so do ours
    (before: the connection opened first stayed open, and `__exit__` never ran)."""

    class HalfOpen(BasePublisher):
        def __init__(self) -> None:
            self.target = "half://open"
            self.connections: list[str] = []

        def open(self) -> None:
            self.connections.append("first")     # opened...
            raise DeliveryError("login refused", self.target)  # ...then the login fails

        def close(self) -> None:
            self.connections.clear()

    target = HalfOpen()
    with pytest.raises(DeliveryError, match="login refused"), target:
        pytest.fail("the body must not run")
    assert target.connections == []


def test_every_installed_target_and_source_describes_itself() -> None:
    targets = {scheme: plugin for plugin in target_plugins() for scheme in plugin.schemes}
    assert {"local", "s3", "smtp", "smtps", "ses", "https", "http"} <= set(targets)
    for plugin in targets.values():
        assert issubclass(plugin.options_model, TargetOptions) and plugin.forms
        assert isinstance(plugin.channel, str) and isinstance(plugin.needs_email, bool)
    assert {s for s, p in targets.items() if p.channel == "email"} == {"smtp", "smtps", "ses"}
    assert {s for s, p in targets.items() if p.dkim} == {"smtp", "smtps"}
    sources = source_plugins()
    assert {s.__name__ for s in sources} == {"CsvSource", "JsonlSource", "ParquetSource",
                                             "SqlSource"}
    assert all(issubclass(s.options_model, SourceOptions) and s.forms for s in sources)
    assert [s.__name__ for s in sources if s.fallback] == ["CsvSource"]


def test_the_engine_names_no_target_and_no_source_format() -> None:
    """The `_TARGET` regex, the options table and the scheme lists are gone: outside the
    source plugins themselves, the engine reads what a plugin declares."""
    pattern = re.compile(r"""["'](smtps?|ses|s3|webhook|https?|\.parquet|\.pq)["']""")
    found = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
             for path in sorted((REPO / "edition").rglob("*.py"))
             if "sources" not in path.relative_to(REPO / "edition").parts
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if pattern.search(line) and not line.lstrip().startswith("#")]
    allowed = ("URL_SCHEMES", "url_schemes=")   # links in templates, not targets
    assert [f for f in found if not any(a in f for a in allowed)] == []


def install(where: Path, name: str, group: str, entry: str, module: str) -> dict[str, str]:
    """`module` as an installed distribution's plugin; the environment that sees it."""
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{name}.py").write_text(textwrap.dedent(module), encoding="utf-8")
    info = where / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")
    return {"PYTHONPATH": str(where)}


RECORDER = """
    import json
    from pathlib import Path

    from edition.content.plugins import TargetOptions
    from publishers.base import BasePublisher, Outcome, take_options


    class RecorderOptions(TargetOptions):
        label: str = "none"


    class RecorderPublisher(BasePublisher):
        schemes = ("recorder",)
        forms = ("recorder:FILE",)
        options_model = RecorderOptions
        channel = "recorder"

        def __init__(self, target, *, out_dir=None, options=None):
            self.target = target
            self.file = Path(target.partition(":")[2])
            self.label = take_options(RecorderOptions, target, options).label

        def publish(self, delivery):
            with self.file.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"id": delivery.customer_id, "label": self.label,
                                      "mailing": delivery.mailing}) + "\\n")
            return Outcome("sent", provider_id="recorded")
"""


def test_a_new_target_is_one_module_and_one_entry_point(
        site: Path, customers: Callable[[int], Path], tmp_path: Path) -> None:
    env = install(tmp_path / "plugins", "recorder_target", "edition.targets",
                  "recorder = recorder_target:RecorderPublisher", RECORDER)
    record = tmp_path / "recorded.jsonl"
    set_delivery(site, {"to": f"recorder:{record}", "lable": "spring"})
    code, out, err = edition("validate", "campaigns/weekly-newsletter.yaml", cwd=site, env=env)
    assert code == 2 and "unknown delivery option 'lable' (did you mean 'label'?)" in err, err
    set_delivery(site, {"to": f"recorder:{record}", "label": "spring"})
    path = customers(8)
    for attempt in ("run1", "run2"):   # the second sends nothing again: the ledger knows
        code, out, err = edition(*run_args(path, tmp_path / attempt), "--send", "--yes",
                                 cwd=site, env=env)
        assert code == 0, out + err
        assert {r["status"] for r in manifest(tmp_path / attempt)} == {"sent"}
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [line["id"] for line in lines] == [r["id"] for r in customer_rows(path)]
    assert {line["label"] for line in lines} == {"spring"}
    # without the plugin installed, the same campaign is refused with what is known
    code, out, err = edition("validate", "campaigns/weekly-newsletter.yaml", cwd=site)
    assert code == 2 and "s3://bucket/prefix" in err and "https://host/path" in err, err


MEMORY = """
    import json
    from dataclasses import dataclass
    from pathlib import Path

    from edition.audience.sources import CustomerSource, Found, SourceRows, rows_of
    from edition.content.plugins import SourceOptions


    class RowsOptions(SourceOptions):
        query: str


    @dataclass(frozen=True)
    class RowsSource(CustomerSource):
        '''`{url: rows:///path/to/rows.json, query: …}`: a stand-in for a warehouse.'''

        schemes = ("rows",)
        forms = ("{url: rows:///FILE, query: …}",)
        options_model = RowsOptions
        url: str
        query: str = ""

        @classmethod
        def from_setting(cls, value, *, root, encoding):
            return cls(value["url"], value.get("query", "")) if isinstance(value, dict) \\
                else cls(str(value))

        def _rows(self):
            return json.loads(Path(self.url.removeprefix("rows://")).read_text())

        def open(self, declared=None):
            data = self._rows()
            return SourceRows({"age": "integer"}, rows_of(iter(data), declared))

        def find(self, customer_id, declared=None):
            for n, row in enumerate(self._rows(), 1):
                if str(row["id"]) == customer_id:
                    return Found(n - 1, n, row, {"age": "integer"})
            return None

        def count(self):
            return len(self._rows())

        def columns(self):
            return list(self._rows()[0])
"""


def test_a_new_source_is_one_module_and_one_entry_point(
        site: Path, customers: Callable[[int], Path], tmp_path: Path) -> None:
    env = install(tmp_path / "plugins", "rows_source", "edition.sources",
                  "rows = rows_source:RowsSource", MEMORY)
    people = [{k: v for k, v in row.items() if v} for row in customer_rows(customers(8))]
    for person in people:
        person["age"] = int(person["age"])
    data = tmp_path / "rows.json"
    data.write_text(json.dumps(people), encoding="utf-8")
    campaign = site / "campaigns" / "weekly-newsletter.yaml"
    text = campaign.read_text(encoding="utf-8")
    campaign.write_text(text.replace(
        "customers: data/customers.csv",
        f"customers: {{url: 'rows://{data}', quary: x}}"), encoding="utf-8")
    code, out, err = edition("validate", "campaigns/weekly-newsletter.yaml", cwd=site, env=env)
    assert code == 2 and "unknown key 'quary' (did you mean 'query'?)" in err, err
    campaign.write_text(text.replace(
        "customers: data/customers.csv",
        f"customers: {{url: 'rows://{data}', query: all}}"), encoding="utf-8")
    code, out, err = edition("run", "campaigns/weekly-newsletter.yaml", "--out",
                             tmp_path / "out", "--as-of", "2026-11-23", cwd=site, env=env)
    assert code == 0, out + err
    rows = manifest(tmp_path / "out")
    assert [r["customer_id"] for r in rows] == [p["id"] for p in people]
    assert {r["status"] for r in rows} == {"rendered"}
    code, out, err = edition("preview", "campaigns/weekly-newsletter.yaml", "--customer",
                             people[0]["id"], "--as-of", "2026-11-23", cwd=site, env=env)
    assert code == 0, out + err


@pytest.mark.parametrize("target", ["smtp://bob:hunter22@mail.acme.example:25",
                                    "https://bob:hunter22@hooks.acme.example/edition"])
def test_a_target_with_a_password_is_refused_without_showing_it(
        content_tree: Callable[..., Path], target: str) -> None:
    """Before, the campaign error quoted the target whole: the password with it."""
    from edition.content.campaign import load_campaign
    from edition.errors import ContentError

    root = content_tree(templates={"t.html.j2": "x"}, campaigns={"c.yaml": (
        "name: c\ntemplate: t.html.j2\nslots: {a: {kind: article}}\n"
        f"delivery: {{to: \"{target}\"}}\n")})
    with pytest.raises(ContentError, match=r"c\.yaml:4: .*must not hold credentials") as caught:
        load_campaign(root / "campaigns" / "c.yaml")
    assert "hunter22" not in str(caught.value)
