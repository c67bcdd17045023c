"""The send ledger: claim/record, crashes (including kill -9), concurrent runs.

Every protocol test runs against both backends: SQLite (a file) and PostgreSQL (a
fresh database on the session's throwaway server, tests/fixtures_postgres.py).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

import pytest

from edition.send.ledger.location import Ledger, open_ledger
from edition.send.ledger.sqlite import Claim, LedgerBusy, LedgerError
from publishers import Outcome

ROOT = Path(__file__).resolve().parents[1]
SENT = Outcome("sent", provider_id="250 queued as Q1")
C = "spring"


@pytest.fixture(params=["sqlite", "postgresql"])
def path(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where the ledger lives: a SQLite file, or a PostgreSQL URL (a new database)."""
    if request.param == "sqlite":
        return tmp_path / "out" / C / "ledger.sqlite"
    return request.getfixturevalue("fresh_postgresql_url")


def ledger_at(location: Path | str, *, exclusive: bool = True, wait: float = 0.0,
              readonly: bool = False) -> Ledger:
    """The ledger at `location` through the factory (opened; `with` works on it too)."""
    return open_ledger(location, exclusive=exclusive, wait=wait, readonly=readonly)


def test_claim_record_round_trip(path: Path | str) -> None:
    with ledger_at(path) as ledger:
        assert ledger.claim(C, "c1", "h1", "run-1") is Claim.SEND
        assert ledger.lookup(C, "c1", "h1").state == "sending"  # durable before the send
        ledger.record(C, "c1", "h1", SENT, "run-1")
        assert ledger.claim(C, "c1", "h1", "run-2") is Claim.ALREADY_SENT
        entry = ledger.lookup(C, "c1", "h1")
    assert entry is not None
    assert (entry.state, entry.provider_id, entry.run_id, entry.attempts) == (
        "sent", "250 queued as Q1", "run-1", 1)
    assert entry.updated_at >= entry.claimed_at
    with ledger_at(path, readonly=True) as ro:
        assert ro.counts(C)["sent"] == 1
        with pytest.raises(LedgerError, match="read-only"):
            ro.claim(C, "c2", "h2", "run-3")


def test_other_content_is_a_new_key_unless_once_per_customer(path: Path | str) -> None:
    with ledger_at(path) as ledger:
        ledger.claim(C, "c1", "h1", "r1")
        ledger.record(C, "c1", "h1", SENT, "r1")
        assert ledger.claim(C, "c1", "h2", "r2", once_per_customer=True) is Claim.ALREADY_SENT
        assert ledger.claim(C, "c1", "h2", "r2") is Claim.SEND
        assert ledger.claim("other-campaign", "c1", "h1", "r2") is Claim.SEND
        assert [e.send_key for e in ledger.lookup_customer(C, "c1")] == ["h1", "h2"]


def test_crash_between_claim_and_record_is_unknown_on_reopen(path: Path | str) -> None:
    with ledger_at(path) as ledger:
        assert ledger.claim(C, "c1", "h", "run-1") is Claim.SEND
        # the process dies here: the provider may or may not have the message
    with ledger_at(path) as ledger:
        assert ledger.claim(C, "c1", "h", "run-2") is Claim.UNKNOWN
        entry = ledger.lookup(C, "c1", "h")
        assert entry is not None and entry.state == "unknown"
        assert "interrupted: run run-1" in (entry.reason or "")
        assert ledger.claim(C, "c1", "h", "run-2") is Claim.UNKNOWN  # still not re-sent
        assert ledger.claim(C, "c1", "h", "run-3", resend_unknown=True) is Claim.SEND
        ledger.record(C, "c1", "h", SENT, "run-3")
        assert ledger.claim(C, "c1", "h", "run-4", resend_unknown=True) is Claim.ALREADY_SENT
        assert ledger.lookup(C, "c1", "h").attempts == 2
        states = [e["state"] for e in ledger.history(C, "c1")]
    assert states == ["sending", "unknown", "sending", "sent"]


def test_stale_sending_row_can_be_resent_directly(path: Path | str) -> None:
    with ledger_at(path) as ledger:
        ledger.claim(C, "c1", "h", "run-1")
    with ledger_at(path) as ledger:
        assert ledger.claim(C, "c1", "h", "run-2", resend_unknown=True) is Claim.SEND


def test_recorded_unknown_and_failed(path: Path | str) -> None:
    with ledger_at(path) as ledger:
        for cid in ("u", "f"):
            assert ledger.claim(C, cid, "h", "r1") is Claim.SEND
        ledger.record(C, "u", "h", Outcome("unknown", reason="dropped after DATA"), "r1")
        ledger.record(C, "f", "h", Outcome("failed", reason="550 no such user"), "r1")
        assert ledger.claim(C, "u", "h", "r2") is Claim.UNKNOWN
        assert ledger.lookup(C, "u", "h").reason == "dropped after DATA"
        assert ledger.claim(C, "f", "h", "r2") is Claim.FAILED_BEFORE
        assert Claim.FAILED_BEFORE.may_send and not Claim.UNKNOWN.may_send
        entry = ledger.lookup(C, "f", "h")
        assert (entry.state, entry.attempts, entry.reason) == ("sending", 2, None)
        ledger.record(C, "f", "h", SENT, "r2")
        assert ledger.counts(C) == {"sending": 0, "sent": 1, "failed": 0, "unknown": 1}
        assert [e.customer_id for e in ledger.entries(C, ["unknown"])] == ["u"]


def test_an_acknowledged_send_is_never_downgraded(path: Path | str) -> None:
    with ledger_at(path) as ledger:
        ledger.claim(C, "c1", "h", "r1")
        ledger.record(C, "c1", "h", SENT, "r1")
        ledger.record(C, "c1", "h", Outcome("failed", reason="late error"), "r1")
        assert ledger.lookup(C, "c1", "h").state == "sent"
        assert ledger.claim(C, "c1", "h", "r2") is Claim.ALREADY_SENT
        with pytest.raises(LedgerError, match="status 'bogus'"):
            ledger.record(C, "c1", "h", Outcome("bogus"), "r1")  # type: ignore[arg-type]


def test_a_key_in_flight_in_this_process_is_not_claimed_twice(path: Path | str) -> None:
    with ledger_at(path) as ledger:
        assert ledger.claim(C, "c1", "h", "r1") is Claim.SEND
        assert ledger.claim(C, "c1", "h", "r1", resend_unknown=True) is Claim.UNKNOWN
        assert ledger.lookup(C, "c1", "h").state == "sending"


def test_deferred_records_commit_with_the_next_claim(path: Path | str) -> None:
    with ledger_at(path) as ledger:
        ledger.claim(C, "c1", "h", "r1")
        ledger.record(C, "c1", "h", SENT, "r1", defer=True)
        with ledger_at(path, readonly=True) as ro:
            assert ro.lookup(C, "c1", "h").state == "sending"  # not committed yet
        assert ledger.claim(C, "c1", "h", "r1") is Claim.ALREADY_SENT  # now it is
        ledger.claim(C, "c2", "h", "r1")
        ledger.record(C, "c2", "h", SENT, "r1", defer=True)
    with ledger_at(path) as ledger:  # close() flushed it
        assert ledger.lookup(C, "c2", "h").state == "sent"
        ledger.claim(C, "c3", "h", "r1")
        ledger.record(C, "c3", "h", SENT, "r1", defer=True)
        ledger._pending.clear()  # as if the process died before the next commit
    with ledger_at(path) as ledger:
        assert ledger.claim(C, "c3", "h", "r2") is Claim.UNKNOWN  # never a duplicate


def test_durability_settings(path: Path | str) -> None:
    with ledger_at(path) as ledger:
        db = ledger._db
        assert db is not None
        if isinstance(path, Path):
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        else:
            # the test server runs with synchronous_commit=off: the ledger's session
            # must wait for the WAL flush anyway, so a claim is durable on return
            from sqlalchemy import text

            with db.begin():
                assert db.execute(text("SHOW synchronous_commit")).scalar() == "on"


def test_record_many_and_threads(path: Path | str) -> None:
    with ledger_at(path) as ledger:
        def worker(t: int) -> None:
            for i in range(50):
                assert ledger.claim(C, f"t{t}-{i}", "h", "r1") is Claim.SEND
                ledger.record(C, f"t{t}-{i}", "h", SENT, "r1")

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for i in range(3):
            ledger.claim(C, f"b{i}", "h", "r1")
        ledger.record_many(C, [(f"b{i}", "h", SENT) for i in range(3)], "r1")
        assert ledger.counts(C)["sent"] == 203


def test_second_run_gets_a_clear_error_or_waits(path: Path | str) -> None:
    first = ledger_at(path)
    busy = rf"another run is using this send ledger \(pid {os.getpid()}\)"
    with pytest.raises(LedgerBusy, match=busy):
        ledger_at(path)
    threading.Timer(0.2, first.close).start()
    start = time.monotonic()
    with ledger_at(path, wait=5) as second:
        assert 0.1 < time.monotonic() - start < 5
        assert second.claim(C, "c1", "h", "r2") is Claim.SEND
    err = pickle.loads(pickle.dumps(LedgerBusy("busy", "x.sqlite")))
    assert isinstance(err, LedgerBusy) and str(err) == "x.sqlite: busy"


def test_shared_mode_claims_each_key_once_across_connections(path: Path | str) -> None:
    a, b = ledger_at(path, exclusive=False), ledger_at(path, exclusive=False)
    wins: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(ledger: Ledger) -> None:
        for i in range(200):
            if ledger.claim(C, f"c{i}", "h", "r1").may_send:
                with lock:
                    wins[f"c{i}"] += 1
                ledger.record(C, f"c{i}", "h", SENT, "r1")

    threads = [threading.Thread(target=worker, args=(x,)) for x in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    a.close()
    b.close()
    assert len(wins) == 200 and set(wins.values()) == {1}


# --- crashes for real: kill -9 ---------------------------------------------------------------

CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from edition.send.ledger.location import open_ledger
    from publishers.base import Outcome

    ledger_path, sends, run_id, n, mode, at = sys.argv[1:7]
    n, at = int(n), int(at)
    shared = mode == "shared"
    with open_ledger(ledger_path, exclusive=not shared, wait=10) as ledger:
        fd = os.open(sends, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        for i in range(n):
            key = f"c{i:04d}"
            claim = ledger.claim("spring", key, "h", run_id, resend_unknown=mode == "resend")
            if not claim.may_send:
                continue
            if mode == "die-after-claim" and i == at:
                os.kill(os.getpid(), signal.SIGKILL)
            os.write(fd, f"{key}\\n".encode())  # the provider accepts the message here
            if mode == "die-after-send" and i == at:
                os.kill(os.getpid(), signal.SIGKILL)
            if mode == "slow":
                time.sleep(0.002)
            ledger.record("spring", key, "h", Outcome("sent", provider_id=key), run_id)
    print("done")
""")


def run_child(tmp_path: Path, ledger: Path | str, run_id: str, n: int, mode: str = "run",
              at: int = -1, kill_after_lines: int | None = None) -> int:
    """Run the sender in a subprocess; optionally SIGKILL it once enough sends happened."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    sends = tmp_path / "sends.txt"
    proc = subprocess.Popen([sys.executable, str(script), str(ledger), str(sends), run_id,
                             str(n), mode, str(at)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    if kill_after_lines is not None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            if sends.exists() and sends.read_bytes().count(b"\n") >= kill_after_lines:
                break
            time.sleep(0.001)
        assert proc.poll() is None, "the child finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGKILL), err.decode()
    return proc.returncode


def sends_of(tmp_path: Path) -> Counter[str]:
    return Counter((tmp_path / "sends.txt").read_text().split())


def states(location: Path | str) -> dict[str, str]:
    with ledger_at(location, exclusive=False, readonly=True) as ledger:
        return {e.customer_id: e.state for e in ledger.entries(C)}


def test_kill_9_mid_loop_then_rerun_sends_everyone_exactly_once(tmp_path: Path,
                                                                path: Path | str) -> None:
    n = 300
    kills = 0
    for round_, lines in enumerate((40, 120, 200)):
        code = run_child(tmp_path, path, f"run-{round_}", n, "slow", kill_after_lines=lines)
        kills += code == -signal.SIGKILL
    assert kills == 3
    assert run_child(tmp_path, path, "run-final", n) == 0

    sends, final = sends_of(tmp_path), states(path)
    assert len(final) == n
    assert max(sends.values()) == 1, "a customer was sent twice"
    unknown = {k for k, s in final.items() if s != "sent"}
    assert set(final.values()) <= {"sent", "unknown"}
    assert len(unknown) <= kills  # at most the one message in flight per kill
    assert all(sends[k] == 1 for k, s in final.items() if s == "sent")
    assert set(sends) | unknown == set(final)  # nobody was skipped silently

    # --resend-unknown: only the unknown ones are sent again, each once.
    before = sends_of(tmp_path)
    assert run_child(tmp_path, path, "run-resend", n, "resend") == 0
    again = sends_of(tmp_path) - before
    assert set(again) == unknown and set(again.values()) <= {1}
    assert set(states(path).values()) == {"sent"}


@pytest.mark.parametrize("mode", ["die-after-send", "die-after-claim"])
def test_kill_9_inside_the_window_surfaces_as_unknown(tmp_path: Path, path: Path | str,
                                                     mode: str) -> None:
    assert run_child(tmp_path, path, "run-1", 20, mode, at=7) == -signal.SIGKILL
    assert run_child(tmp_path, path, "run-2", 20) == 0
    sends, final = sends_of(tmp_path), states(path)
    assert final.pop("c0007") == "unknown"
    assert set(final.values()) == {"sent"}
    assert sends["c0007"] == (1 if mode == "die-after-send" else 0)
    assert max(sends.values()) == 1
    assert run_child(tmp_path, path, "run-3", 20, "resend") == 0
    assert sends_of(tmp_path)["c0007"] == sends["c0007"] + 1


def test_two_processes_at_once(tmp_path: Path, path: Path | str) -> None:
    # Exclusive (default): the second run waits for the first, then skips what it sent.
    first = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from edition.send.ledger.location import open_ledger
        with open_ledger({str(path)!r}, exclusive=True):
            print("locked", flush=True)
            time.sleep(0.5)
    """)], cwd=ROOT, stdout=subprocess.PIPE)
    assert first.stdout is not None and first.stdout.readline() == b"locked\n"
    with pytest.raises(LedgerBusy, match=f"pid {first.pid}"):
        ledger_at(path)
    with ledger_at(path, wait=10):
        pass
    first.wait(10)
    # Shared mode: two processes of one run race over the same keys; each is sent once.
    (tmp_path / "child.py").write_text(CHILD)
    args = [sys.executable, str(tmp_path / "child.py"), str(path), str(tmp_path / "sends.txt"),
            "run-x", "200", "shared", "-1"]
    procs = [subprocess.Popen(args, cwd=ROOT) for _ in range(2)]
    for proc in procs:
        assert proc.wait(30) == 0
    assert sends_of(tmp_path) == Counter({f"c{i:04d}": 1 for i in range(200)})


# --- many workers, a killed lock holder, both backends ----------------------------------------

RACER = textwrap.dedent("""
    import json, os, random, sys, threading, time
    from edition.send.ledger.location import open_ledger
    from publishers.base import Outcome

    location, out, run_id, n, go = sys.argv[1:6]
    keys = [f"c{i:04d}" for i in range(int(n))]
    wins, lock = [], threading.Lock()
    with open_ledger(location, exclusive=False) as ledger:
        open(out + ".ready", "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.01)

        def worker(t):
            order = keys[:]
            random.Random(f"{out}-{t}").shuffle(order)  # every thread in its own order
            for key in order:
                if ledger.claim("spring", key, "h", run_id).may_send:
                    with lock:
                        wins.append(key)
                    ledger.record("spring", key, "h", Outcome("sent", provider_id=key),
                                  run_id, defer=True)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    with open(out, "w") as handle:
        json.dump(wins, handle)
""")


@pytest.mark.parametrize("runs", ["one-run", "separate-runs"])
def test_processes_racing_for_the_same_keys_claim_each_once(tmp_path: Path, path: Path | str,
                                                             runs: str) -> None:
    script, go, n = tmp_path / "racer.py", tmp_path / "go", 300
    script.write_text(RACER)
    outs = [tmp_path / f"wins-{p}.json" for p in range(4)]
    procs = [subprocess.Popen([sys.executable, str(script), str(path), str(out),
                               "run-x" if runs == "one-run" else f"run-{p}", str(n), str(go)],
                              cwd=ROOT, stderr=subprocess.PIPE)
             for p, out in enumerate(outs)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
            Path(f"{out}.ready").exists() or proc.poll() is not None
            for out, proc in zip(outs, procs, strict=True)):
        time.sleep(0.02)
    go.touch()  # all connected: now they race
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()
    wins = Counter(key for out in outs for key in json.loads(out.read_text()))
    assert wins == Counter({f"c{i:04d}": 1 for i in range(n)})
    assert set(states(path).values()) == {"sent"}


def test_a_lock_holder_killed_with_sigkill_frees_the_run_lock(path: Path | str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from edition.send.ledger.location import open_ledger
        with open_ledger({str(path)!r}, exclusive=True):
            print("locked", flush=True)
            time.sleep(300)
    """)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        with pytest.raises(LedgerBusy, match=f"pid {holder.pid}"):
            ledger_at(path, wait=0.3)
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(60) == -signal.SIGKILL
        with ledger_at(path, wait=60) as ledger:  # the server (or the OS) let go of it
            assert ledger.claim(C, "c1", "h", "r2") is Claim.SEND
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate(timeout=60)


# --- PostgreSQL only ---------------------------------------------------------------------------


def test_a_password_in_a_ledger_url_is_never_shown(postgres_server) -> None:
    from fixtures_postgres import free_port

    secret = "s3cr3t-Pa55"
    for url in (f"postgresql://edition:{secret}@127.0.0.1:{free_port()}/nowhere",
                f"postgresql://edition:{secret}@127.0.0.1:{postgres_server.port}/no_such_db"):
        with pytest.raises(LedgerError) as caught:
            open_ledger(url, exclusive=True)
        shown = str(caught.value) + repr(caught.value) + "".join(
            traceback.format_exception(caught.value))
        assert secret not in shown and "***" in shown, shown
        assert "cannot open the send ledger" in str(caught.value)


def test_postgres_run_lock_scopes_and_readonly(fresh_postgresql_url: str) -> None:
    url = fresh_postgresql_url
    with pytest.raises(LedgerError, match="no ledger here"):
        open_ledger(url, exclusive=False, readonly=True)
    spring = open_ledger(url, exclusive=True, scope="spring")
    try:
        with open_ledger(url, exclusive=True, scope="autumn") as autumn:  # another campaign
            assert autumn.claim("autumn", "c1", "h", "r1") is Claim.SEND
        with pytest.raises(LedgerBusy, match=f"pid {os.getpid()}"):
            open_ledger(url, exclusive=True, scope="spring")
        assert spring._run_lock is not None and spring._run_lock is not spring._db
    finally:
        spring.close()
    with open_ledger(url, exclusive=False, readonly=True) as ro:
        assert ro.counts("autumn")["sending"] == 1
        with pytest.raises(LedgerError, match="read-only"):
            ro.flush()


def test_mailings_are_the_same_in_both_backends(tmp_path: Path,
                                                fresh_postgresql_url: str) -> None:
    seen = []
    for location in (tmp_path / "ledger.sqlite", fresh_postgresql_url):
        with ledger_at(location) as ledger:
            ledger.open_mailing(C, "2026-11-02", "email", as_of="2026-11-02", run_id="r1",
                                expected=3)
            ledger.open_mailing(C, "2026-11-02", "email", as_of="2026-11-02", run_id="r2",
                                expected=2)  # resumed: expected keeps the larger count
            key = "2026-11-02\x1femail"
            for cid in ("a", "b"):
                ledger.claim(C, cid, key, "r2")
            ledger.record_many(C, [("a", key, SENT), ("b", key, Outcome("failed"))], "r2")
            ledger.open_mailing(C, "later", "s3://x", as_of="2026-12-01", run_id="r3",
                                expected=1)
            ledger.finish_mailing(C, "2026-11-02", "email")
            seen.append([(m.mailing, m.channel, m.as_of, m.status, m.run_id, m.expected,
                          m.sent, m.owed, m.finished_at is not None)
                         for m in ledger.mailings(C)] + [len(ledger.mailings(C, "email"))])
    assert seen[0] == seen[1] == [
        ("2026-11-02", "email", "2026-11-02", "finished", "r2", 3, 1, 2, True),
        ("later", "s3://x", "2026-12-01", "open", "r3", 1, 0, 1, False), 1]


def test_where_the_ledger_is(tmp_path: Path) -> None:
    from edition.errors import ContentError
    from edition.send.ledger.location import ledger_location, show_location

    root = tmp_path
    assert ledger_location(None, root=root, campaign=C, environ={}) == (
        root / "out" / C / "ledger.sqlite")
    assert ledger_location("ledgers/x.sqlite", root=root, campaign=C, environ={}) == (
        root / "ledgers" / "x.sqlite")
    url = "postgresql://edition@db.internal/edition"
    assert ledger_location(url, root=root, campaign=C, environ={}) == url
    env = {"EDITION_LEDGER_URL": "postgresql://edition:pw-from-env@db/edition"}
    assert ledger_location(None, root=root, campaign=C, environ=env) == (
        env["EDITION_LEDGER_URL"])
    assert show_location(env["EDITION_LEDGER_URL"]) == "postgresql://edition:***@db/edition"
    with pytest.raises(ContentError, match="holds a password") as caught:
        ledger_location("postgresql://edition:hunter22@db/edition", root=root, campaign=C)
    assert "hunter22" not in str(caught.value)


def test_a_deadlock_victim_is_retried_whole(fresh_postgresql_url: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg
    from sqlalchemy.exc import OperationalError

    with open_ledger(fresh_postgresql_url, exclusive=True) as ledger:
        ledger.claim(C, "c1", "h", "r1")
        ledger.record(C, "c1", "h", SENT, "r1", defer=True)
        real, failures = ledger._write_records, []

        def once_a_deadlock(db, rows):  # the server picked this transaction as the victim
            real(db, rows)
            if not failures:
                failures.append(1)
                raise OperationalError("COMMIT", {}, psycopg.errors.DeadlockDetected())

        monkeypatch.setattr(ledger, "_write_records", once_a_deadlock)
        assert ledger.claim(C, "c2", "h", "r1") is Claim.SEND
        assert failures == [1]
        assert ledger.lookup(C, "c1", "h").state == "sent"
        assert ledger.lookup(C, "c2", "h").state == "sending"
        assert [e["state"] for e in ledger.history(C, "c1")] == ["sending", "sent"]
        assert [e["state"] for e in ledger.history(C, "c2")] == ["sending"]
        assert ledger.claim(C, "c2", "h", "r1", resend_unknown=True) is Claim.UNKNOWN  # ours
