"""The catalog: every module of the content root, read and validated in one pass."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edition.content.modules import KINDS, Module, parse_module
from edition.errors import ContentError, collect


@dataclass
class Catalog:
    """All modules, by kind, in a stable order."""

    modules: list[Module] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_kind: dict[str, list[Module]] = {}
        for module in sorted(self.modules, key=lambda m: (m.kind, m.id)):
            self.by_kind.setdefault(module.kind, []).append(module)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.modules)

    def __len__(self) -> int:
        return len(self.modules)

    def kinds(self) -> set[str]:
        return set(KINDS.values()) | set(self.by_kind)


def module_files(root: Path) -> Iterable[Path]:
    """Every Markdown file under articles/, offers/ and greetings/."""
    for folder in KINDS:
        base = root / folder
        if base.is_dir():
            yield from sorted(p for p in base.rglob("*.md") if p.is_file())


def load_catalog(root: Path, *, raise_errors: bool = True) -> tuple[Catalog, list[ContentError]]:
    """Parse every module; duplicate ids (per kind) are errors naming both files."""
    modules: list[Module] = []
    errors: list[ContentError] = []
    seen: dict[tuple[str, str], Module] = {}
    for file in module_files(root):
        module, problems = parse_module(file, root)
        errors.extend(problems)
        if module is None:
            continue
        key = (module.kind, module.id)
        if key in seen:
            errors.append(ContentError(
                f"duplicate {module.kind} id {module.id!r} (also in {seen[key].source})",
                module.source, module.line))
            continue
        seen[key] = module
        modules.append(module)
    if raise_errors:
        collect(errors)
    return Catalog(modules), errors
