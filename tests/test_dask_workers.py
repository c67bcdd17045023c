"""The local Dask cluster a run starts: its workers take no statistical profile.

Dask's profiler calls sys._current_frames() in every worker every 10 ms. On CPython
before 3.11.9 (gh-106883) a garbage collection that starts inside that call and frees a
threading.local (tenacity's Retrying holds one; an SMTP send makes one per message)
deadlocks the worker: bench/scale.py's 100,000- and 20,000-customer sends stopped with all
three workers frozen in `trigger_profile` -> "Garbage-collecting" -> local_clear.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_local_dask_workers_run_without_the_statistical_profiler() -> None:
    from flows.tasks import _task_runner

    with _task_runner("dask", 2, None, {}) as runner:
        found = runner.client.run(lambda dask_worker: (
            "profile" in dask_worker.periodic_callbacks,
            __import__("dask").config.get("distributed.worker.profile.enabled")))
    assert len(found) == 2
    assert all(entry == (False, False) for entry in found.values()), found


FRAGMENTED = """
import sys
sys.path.insert(0, {root!r})
import psutil
from flows.tasks import trim_heap

def rss():
    return psutil.Process().memory_info().rss

kept = []
garbage = [bytes(1000) + bytes([n % 256]) for n in range(200_000)]   # ~200 MB of blocks
kept = garbage[::64]        # one live block in every 64: the freed pages lie between them
del garbage
before = rss()
print(trim_heap(), before, rss())
"""


def test_a_dask_batch_s_freed_heap_goes_back_to_the_system() -> None:
    """What a batch leaves: many freed blocks between a few live ones. glibc keeps those
    pages (they are not at the top of the heap) until malloc_trim."""
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", FRAGMENTED.format(root=root)],
                          capture_output=True, text=True, timeout=300, check=True)
    released, before, after = done.stdout.split()
    assert released == "True"
    assert int(before) - int(after) > 100 * 2**20, (before, after)
