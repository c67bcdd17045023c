"""What a run was made of, as run.json records it for replays (edition.run.replay).

`record` (the lifecycle's one call) gives run.json a `replay` block: the sha256 of the
campaign file, of every template and module file, of the house settings (edition.yaml),
of the customer data, and of the code (edition/, renderers/, the installed version),
plus the customer file's absolute path and the cadence's settings and snapshot size;
`changes` says in words what differs between two such blocks.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edition.content.catalog import module_files
from edition.content.house import HOUSE_FILE

CODE_PACKAGES = ("edition", "renderers")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_digests(root: Path, campaign_file: Path) -> dict[str, str]:
    """Relative path -> sha256 of what the content of a run is: the campaign file, every
    template, every module file, the house settings."""
    files = [campaign_file, *module_files(root)]
    templates = root / "templates"
    if templates.is_dir():
        files += sorted(p for p in templates.rglob("*") if p.is_file())
    if (root / HOUSE_FILE).is_file():
        files.append(root / HOUSE_FILE)
    found = {}
    for path in files:
        try:
            rel = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = str(path)
        found[rel] = sha256_file(path)
    return dict(sorted(found.items()))


def code_digest() -> dict[str, str]:
    """The code that rendered: the installed version and a digest of its source files."""
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        module = __import__(package)
        base = Path(next(iter(module.__path__)))
        for path in sorted(base.rglob("*")):
            if path.is_file() and path.suffix in {".py", ".j2", ".css", ".po", ".html"}:
                digest.update(path.relative_to(base.parent).as_posix().encode() + b"\0")
                digest.update(path.read_bytes())
    try:
        version = importlib.metadata.version("edition")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"version": version, "sha256": digest.hexdigest()}


def customers_digest(source: Any) -> tuple[str | None, str | None]:
    """(absolute path, sha256) of a customer file; (None, None) for a database query."""
    path = getattr(source, "path", None)
    if path is None or not Path(path).is_file():
        return None, None
    path = Path(path).resolve()
    return str(path), sha256_file(path)


def record(options: Any, plan: Any, source: Any) -> dict[str, Any]:
    """run.json's `replay` block for this run (RunOptions, Plan, customer source)."""
    from edition.run.cadence import recorded

    campaign = plan.campaign
    path, customers = customers_digest(source)
    return {"replay": {"content": content_digests(campaign.root, Path(options.campaign)),
                       "customers": {"path": path, "sha256": customers,
                                     "label": getattr(source, "label", None)},
                       "code": code_digest(), **recorded(options, plan)}}


def changes(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What differs between two `replay` blocks, in words."""
    said: list[str] = []
    before, after = recorded.get("content") or {}, now.get("content") or {}
    for rel in sorted(set(before) | set(after)):
        if rel not in after:
            said.append(f"{rel} was removed")
        elif rel not in before:
            said.append(f"{rel} is new")
        elif before[rel] != after[rel]:
            said.append(f"{rel} was edited")
    if (recorded.get("customers") or {}).get("sha256") != (now.get("customers") or {}).get(
            "sha256"):
        said.append("the customer data changed")
    if (recorded.get("code") or {}) != (now.get("code") or {}):
        old, new = recorded.get("code") or {}, now.get("code") or {}
        said.append(f"the code changed (edition {old.get('version', '?')} -> "
                    f"{new.get('version', '?')}, source {str(old.get('sha256', '?'))[:12]} -> "
                    f"{str(new.get('sha256', '?'))[:12]})")
    return said
