"""GroupCommit (edition/send/ledger/group_commit.py), the one group-commit loop of both
send ledgers: operations queued while a commit is under way share the next one, each
caller gets its own operation's result, and a failed commit fails every operation in it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from edition.send.ledger.group_commit import GroupCommit

WAITING = 7


def test_operations_queued_during_a_commit_share_the_next_one() -> None:
    lock = threading.RLock()
    commits: list[list[str]] = []
    committing = threading.Event()
    group: GroupCommit[list[str]]

    def transaction(body: Callable[[list[str]], None]) -> None:
        ran: list[str] = []
        body(ran)
        if not commits:   # the first commit lasts until the others are queued
            committing.set()
            deadline = time.monotonic() + 120
            while len(group._queue) < WAITING and time.monotonic() < deadline:
                time.sleep(0.005)
        commits.append(ran)

    group = GroupCommit(lock, transaction)
    results: dict[str, str] = {}

    def op(name: str) -> Callable[[list[str]], str]:
        def run(tx: list[str]) -> str:
            tx.append(name)
            return f"done {name}"
        return run

    def caller(name: str) -> None:
        results[name] = group.run(op(name), order=(name,))

    first = threading.Thread(target=caller, args=("a",))
    first.start()
    assert committing.wait(120)
    others = [threading.Thread(target=caller, args=(n,)) for n in "hgfedcb"[:WAITING]]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join(120)
    assert results == {n: f"done {n}" for n in "abcdefgh"}
    assert commits[0] == ["a"]
    assert commits[1] == sorted("bcdefgh")   # one commit for the seven, in key order
    assert len(commits) == 2


def test_a_failed_commit_fails_each_operation_in_it() -> None:
    class Broken(Exception):
        pass

    def transaction(body: Callable[[None], None]) -> None:
        body(None)
        raise Broken("disk full")

    group: GroupCommit[None] = GroupCommit(threading.RLock(), transaction)
    with pytest.raises(Broken, match="disk full"):
        group.run(lambda tx: 1)
    assert not group._queue
