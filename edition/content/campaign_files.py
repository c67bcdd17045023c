"""Where campaign files are: the content root, a campaign named by its `name:`, and the
path a message shows (`campaigns/x.yaml`)."""

from __future__ import annotations

from pathlib import Path

import yaml


def find_root(campaign_file: Path) -> Path:
    """The content root is the folder holding campaigns/ (else the campaign's folder)."""
    folder = campaign_file.resolve().parent
    return folder.parent if folder.name == "campaigns" else folder


def is_campaign_name(ref: str) -> bool:
    """A bare name (`weekly-newsletter`), not a path to a campaign file."""
    return bool(ref) and "/" not in ref and "\\" not in ref and \
        Path(ref).suffix not in {".yaml", ".yml"}


def campaign_file(ref: str, root: Path) -> Path | None:
    """The file a campaign reference names, or None.

    A name is looked up among root/campaigns/*.yaml by each file's `name:` (the file's
    stem when it has none); a relative path is taken from the content root, then from the
    working directory; an absolute path as it is.
    """
    if not ref:
        return None
    if not is_campaign_name(ref):
        path = Path(ref).expanduser()
        if not path.is_absolute() and (root / path).is_file():
            path = root / path
        return path if path.is_file() else None
    folder = root / "campaigns"
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.suffix in {".yaml", ".yml"}
                   and p.is_file() and not p.name.startswith("."))
    files.sort(key=lambda p: p.stem != ref)  # the file named after it first (stable)
    for file in files:
        if _declared_name(file) == ref:
            return file
    return None


def _declared_name(file: Path) -> str | None:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return str(name) if name else file.stem


def relative_to_root(file: Path, root: Path) -> str:
    """`campaigns/x.yaml` for a file under the content root (else the path as given)."""
    try:
        return file.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(file)
