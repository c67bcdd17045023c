"""The window of batches in flight: one slow batch must not idle the other workers."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from edition.run.executors import AHEAD, in_order

WORKERS = 2
QUICK_NEEDED = 10   # more than the old window (2 × workers) could ever let run


def _batch(number: int, marks: str) -> tuple[int, int]:
    """A fake batch: number 0 is slow, it runs until QUICK_NEEDED others have finished
    (or a minute has passed); the others leave a mark and return at once."""
    folder = Path(marks)
    if number == 0:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = len(list(folder.iterdir()))
            if seen >= QUICK_NEEDED:
                return number, seen
            time.sleep(0.05)
        return number, len(list(folder.iterdir()))
    (folder / str(number)).touch()
    return number, 0


def test_batches_keep_being_submitted_while_the_oldest_runs_long(tmp_path: Path) -> None:
    assert AHEAD * 2 * WORKERS > QUICK_NEEDED  # the window lets them run...
    total = 30
    made: list[int] = []
    with ProcessPoolExecutor(max_workers=WORKERS) as pool:

        def submitted():  # type: ignore[no-untyped-def]
            for number in range(total):
                made.append(number)
                yield pool.submit(_batch, number, str(tmp_path))

        results = list(in_order(submitted(), WORKERS))
    # ...and they did, while the slow one ran: it saw them finish, then ended (had it
    # given up after its minute instead, it would say fewer)
    assert results[0][1] >= QUICK_NEEDED
    # handed back in input order, every batch once
    assert [n for n, _ in results] == list(range(total)) == made
