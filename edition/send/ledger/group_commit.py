"""Group commit: the operations several threads queue meanwhile share one write
transaction, so one commit (one disk flush, one round trip) serves several claims.

Both ledgers (SQLite, PostgreSQL) use it; each gives its own `transaction`, which opens
a write transaction, runs the body inside it and commits (the PostgreSQL one retries the
whole body when the server picks it as a deadlock victim, so a body may run more than
once: an operation must only read and write the database it is handed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

__all__ = ["GroupCommit"]

_Tx = TypeVar("_Tx")  # what a backend's transaction hands each operation
_T = TypeVar("_T")


class _Request(Generic[_Tx]):
    """One operation waiting for a group commit, and what it produced."""

    __slots__ = ("done", "error", "op", "order", "result")

    def __init__(self, op: Callable[[_Tx], object], order: tuple[str, ...]):
        self.op = op
        self.order = order
        self.done = False
        self.result: object = None
        self.error: BaseException | None = None


class GroupCommit(Generic[_Tx]):
    """Runs each operation in a write transaction whose commit it shares with the
    operations other threads queued while the previous commit was under way.

    `lock` is the ledger's own (re-entrant) lock: whoever holds it commits everything
    queued so far, and the others find their operation done when they get it.
    """

    def __init__(self, lock: threading.RLock,
                 transaction: Callable[[Callable[[_Tx], None]], None]):
        self._lock = lock
        self._transaction = transaction
        self._queue: list[_Request[_Tx]] = []
        self._queue_lock = threading.Lock()

    def run(self, op: Callable[[_Tx], _T], order: tuple[str, ...] = ()) -> _T:
        """What `op` returns, once the transaction it ran in is committed; what the
        transaction raised otherwise (every operation of the batch gets the error).

        Operations of one batch run sorted by `order` (a stable sort: the queue's order
        among equals); PostgreSQL claims pass their smallest key, so concurrent workers
        lock rows in one order and deadlock less.
        """
        request: _Request[_Tx] = _Request(op, order)
        with self._queue_lock:
            self._queue.append(request)
        with self._lock:  # whoever gets the lock commits everything queued so far
            if not request.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                batch.sort(key=lambda r: r.order)

                def body(tx: _Tx) -> None:
                    for r in batch:
                        r.result = r.op(tx)

                try:
                    self._transaction(body)
                except BaseException as exc:
                    for r in batch:
                        r.error = exc
                for r in batch:
                    r.done = True
        if request.error is not None:
            raise request.error
        return cast(_T, request.result)   # what `op` returned: it did not raise
