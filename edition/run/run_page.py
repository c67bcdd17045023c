"""What a finished run shows a person beside its report.md: links to a few of its
editions, and its versions as table rows (the send-campaign flow's artifacts); a link
opens over `edition serve`'s HTTP server when it publishes the folder (`output_link`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from edition.errors import RunError
from edition.run.folder import is_remote, read_from
from edition.run.summary import RunSummary

SAMPLES = 3
MAX_ROWS = 500   # a table a browser still draws
# Where `edition serve` publishes the output folders over HTTP (loopback), so the
# artifacts' links open in a browser; without it they are file:// links.
OUTPUT_URL_ENV = "EDITION_OUTPUT_URL"
OUTPUT_ROOT_ENV = "EDITION_OUTPUT_ROOT"


def output_link(path: Path | str) -> str:
    """A link a person can open: over `edition serve`'s HTTP server when the path is
    under its folder, else a file:// URI."""
    target = Path(path).resolve()
    base, root = os.environ.get(OUTPUT_URL_ENV), os.environ.get(OUTPUT_ROOT_ENV)
    if base and root:
        try:
            rel = target.relative_to(Path(root).resolve())
        except ValueError:
            pass
        else:
            suffix = "/" if target.is_dir() else ""
            return base.rstrip("/") + "/" + quote(rel.as_posix()) + suffix
    return target.as_uri()


def report_with_samples(summary: RunSummary, link: Callable[[Path], str]) -> str:
    """The run's report, with links to its first editions and to its folder when the
    folder is on this machine (`link` makes a link a browser opens)."""
    location = summary.out_dir
    if is_remote(location):
        return summary.report
    out_dir = Path(location)
    samples: list[Path] = []
    for fmt in ("html", "text", "pdf"):
        if (out_dir / fmt).is_dir():
            samples = sorted((out_dir / fmt).iterdir())[:SAMPLES]
            break
    if not samples:
        return summary.report
    return (summary.report + "\n## Open an edition\n\n"
            + "\n".join(f"- [{p.parent.name}/{p.name}]({link(p)})" for p in samples)
            + f"\n\nAll files: [{out_dir.name}]({link(out_dir)})\n")


def version_rows(location: str) -> tuple[int, list[dict[str, object]]]:
    """(how many versions, the first MAX_ROWS as rows: id, customers, locale, segments,
    a column per slot) from the run folder's versions.json, read where it is."""
    try:
        versions = json.loads(read_from(location, "versions.json") or b"{}")["versions"]
    except (RunError, ValueError, KeyError):
        return 0, []
    rows: list[dict[str, object]] = [
        {"version": v["id"], "customers": v["customers"], "locale": v["locale"],
         "segments": ", ".join(v["segments"]) or "-",
         **{slot: ", ".join(ids) for slot, ids in v["modules"].items()}}
        for v in versions[:MAX_ROWS]]
    return len(versions), rows
