"""The layout's promises, checked on the code: imports run one way and never in a circle.

    cli/, flows/  ->  publishers/  ->  edition/  ->  renderers/
    cli/          ->  web/         ->  edition/

The engine (edition/) is pure Python over plain data: it imports no Prefect, no typer,
no publishers (it finds delivery targets through an entry-point registry), and only the
public names of renderers/. Renderers import nothing of ours. Nothing imports cli/.

Inside the engine, the stage folders run in the pipeline's order, and a stage imports only
the stages before it (and the foundation: the modules directly in edition/):

    content -> store -> audience -> render -> send -> run -> review -> feedback
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("edition", "renderers", "publishers", "flows", "web", "cli")
# who may import whom (besides itself)
ALLOWED = {
    "renderers": set(),
    "edition": {"renderers"},
    "publishers": {"edition"},
    "flows": {"edition", "renderers"},
    "web": {"edition"},
    "cli": {"edition", "flows", "web"},
}


# The engine's stages, in order: each may import the ones before it, never one after.
STAGES = ("content", "store", "audience", "render", "send", "run", "review", "feedback")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path, name: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import, lazy ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for node in ast.walk(tree) if _type_checking(node)
            for child in node.body for n in ast.walk(child)}
    found = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.append((base, [a.name for a in node.names], node.lineno))
    return found


def ours(target: str, known: dict[str, Path]) -> str | None:
    """The module of ours that an import names (a module, or a package's __init__)."""
    while target:
        if target in known:
            return target
        target = target.rpartition(".")[0]
    return None


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {m: set() for m in known}
    for name, path in known.items():
        for target, names, _ in imports_of(path, name):
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                hit = ours(candidate, known)
                if hit and hit != name:
                    edges[name].add(hit)
                    break
    return edges


def test_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], node, nxt])
                              if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert cycles == []


def test_imports_run_one_way() -> None:
    known = modules()
    wrong = []
    for name, path in known.items():
        layer = name.split(".")[0]
        for target, names, line in imports_of(path, name):
            top = target.split(".")[0]
            if top not in PACKAGES or top == layer:
                continue
            where = f"{path.relative_to(REPO)}:{line}: {layer} imports {target}"
            if top not in ALLOWED[layer]:
                wrong.append(where)
            elif top == "renderers" and (any(p.startswith("_") for p in target.split("."))
                                         or any(n.startswith("_") for n in names)):
                wrong.append(where + " (a private name)")
    assert wrong == []


def stage_of(module: str) -> int | None:
    """The stage index of an engine module; None for the foundation (edition/*.py)."""
    parts = module.split(".")
    if parts[0] != "edition" or len(parts) < 3:
        return None
    return STAGES.index(parts[1])


def test_engine_stages_import_only_earlier_stages() -> None:
    known = modules()
    wrong = []
    for name, path in known.items():
        here = stage_of(name) if name.split(".")[0] == "edition" else None
        is_foundation = name.split(".")[0] == "edition" and name.count(".") == 1
        if here is None and not is_foundation:
            continue
        for target, names, line in imports_of(path, name):
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                hit = ours(candidate, known)
                if hit:
                    break
            if hit is None or hit.split(".")[0] != "edition" or hit == name:
                continue
            there = stage_of(hit)
            if there is None and hit.count(".") <= 1:
                continue   # the foundation: every stage may use it
            if is_foundation or (there is not None and there > here):
                wrong.append(f"{path.relative_to(REPO)}:{line}: {name} -> {hit}")
    assert wrong == []


def test_every_engine_module_is_in_a_stage_or_the_foundation() -> None:
    foundation = {"edition", "edition.errors", "edition.naming", "edition.private",
                  "edition.databases", "edition.addresses", "edition.locales",
                  "edition.markdown_text", "edition.outcomes"}
    loose = [m for m in modules() if m.split(".")[0] == "edition" and m.count(".") <= 1
             and m not in foundation and m.split(".")[-1] not in STAGES]
    assert loose == []


@pytest.mark.parametrize("package", ["edition", "renderers"])
def test_the_engine_imports_no_orchestration_or_terminal(package: str) -> None:
    banned = {"prefect", "typer", "rich", "prefect_dask", "distributed", "starlette",
              "fastapi", "uvicorn"}
    found = [f"{path.relative_to(REPO)}:{line}: {target}"
             for name, path in modules().items() if name.split(".")[0] == package
             for target, _, line in imports_of(path, name) if target.split(".")[0] in banned]
    assert found == []


def fresh_python(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_the_engine_does_not_import_prefect() -> None:
    engine = sorted(m for m in modules() if m.split(".")[0] in {"edition", "renderers"})
    assert {"edition.run.lifecycle", "edition.audience.selection", "edition.render.editions",
            "edition.render.personal", "edition.audience.customers", "edition.content.campaign",
            "renderers.eml"} <= set(engine)
    code = (
        "import importlib, json, sys\n"
        f"for name in {engine!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "                        if m.split('.')[0] in {'prefect', 'typer', 'publishers'})))\n"
    )
    assert fresh_python(code) == []


def test_a_cli_run_does_not_import_prefect(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from cli import app\n"
        "runner = CliRunner()\n"
        f"data = {str(tmp_path / 'c.csv')!r}\n"
        "r1 = runner.invoke(app, ['sample-data', '--customers', '40', '--out', data])\n"
        "r2 = runner.invoke(app, ['run', 'campaigns/weekly-newsletter.yaml', '--customers', data,"
        f" '--out', {str(tmp_path / 'out')!r}, '--as-of', '2026-11-02'])\n"
        "r3 = runner.invoke(app, ['preview', 'campaigns/weekly-newsletter.yaml', '--customer',"
        " 'C000001', '--customers', data, '--as-of', '2026-11-02'])\n"
        "print(json.dumps({'codes': [r1.exit_code, r2.exit_code, r3.exit_code],"
        " 'prefect': 'prefect' in sys.modules}))\n"
    )
    result = fresh_python(code)
    assert result == {"codes": [0, 0, 0], "prefect": False}
    assert (tmp_path / "out" / "manifest.jsonl").is_file()
