"""The send ledger: claim/record, crashes (including kill -9), concurrent runs."""

from __future__ import annotations

import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from edition.ledger import Claim, LedgerBusy, LedgerError, SendLedger
from publishers import Outcome

ROOT = Path(__file__).resolve().parents[1]
SENT = Outcome("sent", provider_id="250 queued as Q1")
C = "spring"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "out" / C / "ledger.sqlite"


def test_claim_record_round_trip(path: Path) -> None:
    with SendLedger(path) as ledger:
        assert ledger.claim(C, "c1", "h1", "run-1") is Claim.SEND
        assert ledger.lookup(C, "c1", "h1").state == "sending"  # durable before the send
        ledger.record(C, "c1", "h1", SENT, "run-1")
        assert ledger.claim(C, "c1", "h1", "run-2") is Claim.ALREADY_SENT
        entry = ledger.lookup(C, "c1", "h1")
    assert entry is not None
    assert (entry.state, entry.provider_id, entry.run_id, entry.attempts) == (
        "sent", "250 queued as Q1", "run-1", 1)
    assert entry.updated_at >= entry.claimed_at
    with SendLedger(path, readonly=True) as ro:
        assert ro.counts(C)["sent"] == 1
        with pytest.raises(LedgerError, match="read-only"):
            ro.claim(C, "c2", "h2", "run-3")


def test_other_content_is_a_new_key_unless_once_per_customer(path: Path) -> None:
    with SendLedger(path) as ledger:
        ledger.claim(C, "c1", "h1", "r1")
        ledger.record(C, "c1", "h1", SENT, "r1")
        assert ledger.claim(C, "c1", "h2", "r2", once_per_customer=True) is Claim.ALREADY_SENT
        assert ledger.claim(C, "c1", "h2", "r2") is Claim.SEND
        assert ledger.claim("other-campaign", "c1", "h1", "r2") is Claim.SEND
        assert [e.send_key for e in ledger.lookup_customer(C, "c1")] == ["h1", "h2"]


def test_crash_between_claim_and_record_is_unknown_on_reopen(path: Path) -> None:
    with SendLedger(path) as ledger:
        assert ledger.claim(C, "c1", "h", "run-1") is Claim.SEND
        # the process dies here: the provider may or may not have the message
    with SendLedger(path) as ledger:
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


def test_stale_sending_row_can_be_resent_directly(path: Path) -> None:
    with SendLedger(path) as ledger:
        ledger.claim(C, "c1", "h", "run-1")
    with SendLedger(path) as ledger:
        assert ledger.claim(C, "c1", "h", "run-2", resend_unknown=True) is Claim.SEND


def test_recorded_unknown_and_failed(path: Path) -> None:
    with SendLedger(path) as ledger:
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


def test_an_acknowledged_send_is_never_downgraded(path: Path) -> None:
    with SendLedger(path) as ledger:
        ledger.claim(C, "c1", "h", "r1")
        ledger.record(C, "c1", "h", SENT, "r1")
        ledger.record(C, "c1", "h", Outcome("failed", reason="late error"), "r1")
        assert ledger.lookup(C, "c1", "h").state == "sent"
        assert ledger.claim(C, "c1", "h", "r2") is Claim.ALREADY_SENT
        with pytest.raises(LedgerError, match="status 'bogus'"):
            ledger.record(C, "c1", "h", Outcome("bogus"), "r1")  # type: ignore[arg-type]


def test_a_key_in_flight_in_this_process_is_not_claimed_twice(path: Path) -> None:
    with SendLedger(path) as ledger:
        assert ledger.claim(C, "c1", "h", "r1") is Claim.SEND
        assert ledger.claim(C, "c1", "h", "r1", resend_unknown=True) is Claim.UNKNOWN
        assert ledger.lookup(C, "c1", "h").state == "sending"


def test_deferred_records_commit_with_the_next_claim(path: Path) -> None:
    with SendLedger(path) as ledger:
        ledger.claim(C, "c1", "h", "r1")
        ledger.record(C, "c1", "h", SENT, "r1", defer=True)
        with SendLedger(path, readonly=True) as ro:
            assert ro.lookup(C, "c1", "h").state == "sending"  # not committed yet
        assert ledger.claim(C, "c1", "h", "r1") is Claim.ALREADY_SENT  # now it is
        ledger.claim(C, "c2", "h", "r1")
        ledger.record(C, "c2", "h", SENT, "r1", defer=True)
    with SendLedger(path) as ledger:  # close() flushed it
        assert ledger.lookup(C, "c2", "h").state == "sent"
        ledger.claim(C, "c3", "h", "r1")
        ledger.record(C, "c3", "h", SENT, "r1", defer=True)
        ledger._pending.clear()  # as if the process died before the next commit
    with SendLedger(path) as ledger:
        assert ledger.claim(C, "c3", "h", "r2") is Claim.UNKNOWN  # never a duplicate


def test_durability_settings(path: Path) -> None:
    with SendLedger(path) as ledger:
        db = ledger._db
        assert db is not None
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_record_many_and_threads(path: Path) -> None:
    with SendLedger(path) as ledger:
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


def test_second_run_gets_a_clear_error_or_waits(path: Path) -> None:
    first = SendLedger(path).open()
    busy = rf"another run is using this send ledger \(pid {os.getpid()}\)"
    with pytest.raises(LedgerBusy, match=busy):
        SendLedger(path).open()
    threading.Timer(0.2, first.close).start()
    start = time.monotonic()
    with SendLedger(path, wait=5) as second:
        assert 0.1 < time.monotonic() - start < 5
        assert second.claim(C, "c1", "h", "r2") is Claim.SEND
    err = pickle.loads(pickle.dumps(LedgerBusy("busy", "x.sqlite")))
    assert isinstance(err, LedgerBusy) and str(err) == "x.sqlite: busy"


def test_shared_mode_claims_each_key_once_across_connections(path: Path) -> None:
    a, b = SendLedger(path, exclusive=False).open(), SendLedger(path, exclusive=False).open()
    wins: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(ledger: SendLedger) -> None:
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
    from edition.ledger import SendLedger
    from publishers.base import Outcome

    ledger_path, sends, run_id, n, mode, at = sys.argv[1:7]
    n, at = int(n), int(at)
    shared = mode == "shared"
    with SendLedger(ledger_path, exclusive=not shared, wait=10) as ledger:
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


def run_child(tmp_path: Path, ledger: Path, run_id: str, n: int, mode: str = "run",
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


def states(ledger_path: Path) -> dict[str, str]:
    with sqlite3.connect(ledger_path) as db:
        return dict(db.execute("SELECT customer_id, state FROM sends").fetchall())


def test_kill_9_mid_loop_then_rerun_sends_everyone_exactly_once(tmp_path: Path,
                                                                path: Path) -> None:
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
def test_kill_9_inside_the_window_surfaces_as_unknown(tmp_path: Path, path: Path,
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


def test_two_processes_at_once(tmp_path: Path, path: Path) -> None:
    # Exclusive (default): the second run waits for the first, then skips what it sent.
    first = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from edition.ledger import SendLedger
        with SendLedger({str(path)!r}):
            print("locked", flush=True)
            time.sleep(0.5)
    """)], cwd=ROOT, stdout=subprocess.PIPE)
    assert first.stdout is not None and first.stdout.readline() == b"locked\n"
    with pytest.raises(LedgerBusy, match=f"pid {first.pid}"):
        SendLedger(path).open()
    with SendLedger(path, wait=10):
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
