"""How a flow run ends, and the links its artifacts give.

A flow run refused before any work ends Failed with the reason, and no traceback.

A parameter the form may not use (a customer file outside the content root, an SMTP
server `edition serve` was not started with `--allow`, a send without both switches)
is the user's to fix, not a fault in the code. Raised from the flow, Prefect logged it
twice with a traceback ("Encountered exception during execution", then "Engine
execution exited with unexpected exception" as the run's process ended). The flow
instead logs the reason once and returns `refused(exc)`: a Failed state whose message
is the reason and whose data is the error, so `state.result()` still raises it for
Python callers (`edition run --via-prefect` exits 2 with the message). Prefect's second
report of that same error, when the run's process ends, is dropped by a filter on its
flow-run logger. A run or a send over the campaign's limits ends Failed carrying its
summary (`ended`): `edition run --via-prefect` prints it and exits 3.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edition.errors import EditionError
from edition.run.summary import RunSummary

_MARK = "_edition_refused_before_work"
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


def ended(summary: RunSummary) -> Any:
    """The flow run's end: the summary (a run's or a send's), or a Failed state carrying
    it when the campaign's limits were crossed (exit 3's runs)."""
    if summary.exit_code:
        from prefect.states import Failed

        return Failed(message="; ".join(summary.over_limits()) + "; see the report artifact",
                      data=summary)
    return summary


def refused(exc: EditionError) -> Any:
    """The flow's final state for a run refused before any work."""
    from prefect.states import Failed

    setattr(exc, _MARK, True)
    return Failed(message=f"refused before any work: {exc}", data=exc)


class _RefusalsOnce(logging.Filter):
    """Drops Prefect's records that carry a refusal's traceback (already said once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not getattr(exc, _MARK, False)


def quiet_refusals() -> None:
    """Install the filter on Prefect's flow-run logger (once per process)."""
    logger = logging.getLogger("prefect.flow_runs")
    if not any(isinstance(f, _RefusalsOnce) for f in logger.filters):
        logger.addFilter(_RefusalsOnce())


__all__ = ["ended", "output_link", "quiet_refusals", "refused"]
