"""The campaigns of a content root (campaigns/*.yaml), each checked as `edition run`
checks it (campaign, catalog, templates): what `edition serve` serves. An invalid file
is a problem in file:line words, and the others are still found; a second file with an
already used name is skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edition.content.campaign import Campaign
from edition.errors import ContentErrors, EditionError


@dataclass
class Served:
    """What serve found in campaigns/."""

    root: Path
    campaigns: list[tuple[Path, Campaign]] = field(default_factory=list)   # (file, it)
    problems: list[str] = field(default_factory=list)                 # "file:line: message"


def _campaign_files(root: Path) -> list[Path]:
    folder = root / "campaigns"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix in {".yaml", ".yml"} and not p.name.startswith("."))


def _problems(exc: BaseException, file: Path, root: Path) -> list[str]:
    if isinstance(exc, ContentErrors):
        return [str(e) for e in exc.errors]
    if isinstance(exc, EditionError):
        text = str(exc)
        return [text if exc.file else f"{relative(file, root)}: {text}"]
    return [f"{relative(file, root)}: {type(exc).__name__}: {exc}"]


def relative(file: Path, root: Path) -> str:
    try:
        return file.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(file)


def find_campaigns(root: Path | str = ".") -> Served:
    """Every campaign file, checked like `edition run` checks it; problems collected."""
    from edition.render.plan import Plan

    root = Path(root).resolve()
    served = Served(root)
    files = _campaign_files(root)
    if not files:
        served.problems.append(f"{root / 'campaigns'}: no campaign files (*.yaml) found")
    names: dict[str, Path] = {}
    for file in files:
        try:
            plan = Plan.load(file)
        except Exception as exc:
            served.problems += _problems(exc, file, root)
            continue
        campaign = plan.campaign
        if campaign.name in names:
            line = _line_of_name(file)
            served.problems.append(
                f"{relative(file, root)}:{line}: name {campaign.name!r} is already used by "
                f"{relative(names[campaign.name], root)}; skipped")
            continue
        names[campaign.name] = file
        served.campaigns.append((file, campaign))
    return served


def _line_of_name(file: Path) -> int:
    for number, text in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if text.startswith("name:"):
            return number
    return 1
