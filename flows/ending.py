"""How a flow run ends.

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
summary (`ended`): `edition run --via-prefect` prints it and exits 3. (The links the
artifacts give: edition/run/run_page.py, `output_link`.)
"""

from __future__ import annotations

import logging
from typing import Any

from edition.errors import EditionError
from edition.run.summary import RunSummary

_MARK = "_edition_refused_before_work"
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


__all__ = ["ended", "quiet_refusals", "refused"]
