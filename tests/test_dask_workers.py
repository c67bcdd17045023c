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
