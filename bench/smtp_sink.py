"""SMTP throughput to a local aiosmtpd sink: one connection, a pool of 3, with the ledger.

The sink runs in its own process (so it does not share the GIL with the sender) on
127.0.0.1. Usage: `python bench/smtp_sink.py [--messages 2000]`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from edition.send.ledger.sqlite import SendLedger  # noqa: E402
from publishers import Delivery, open_publisher  # noqa: E402


def counting_sink(port_q: Any, stop: Any, received: Any, connections: Any = None,
                  most: Any = None, latency: float = 0.0) -> None:
    """Child process (bench/send.py's too): an aiosmtpd server on 127.0.0.1 that counts
    the messages `received` and the `connections` (EHLOs), waits `latency` s per DATA (a
    remote relay's round trip) and notes the `most` messages it held at once; it puts
    its port on `port_q` and stops when `stop` is set (or after an hour)."""
    import asyncio
    import socket

    from aiosmtpd.controller import Controller

    class Counting:
        holding = 0

        async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                              responses: list[str]) -> list[str]:
            session.host_name = hostname
            if connections is not None:
                with connections.get_lock():
                    connections.value += 1
            return responses

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.holding += 1
            if most is not None:
                most.value = max(most.value, self.holding)
            if latency:
                await asyncio.sleep(latency)
            self.holding -= 1
            with received.get_lock():
                received.value += len(envelope.rcpt_tos)
            return "250 2.0.0 Ok: queued"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    port_q.put(port)
    stop.wait(3600)
    controller.stop()


def deliveries(n: int) -> list[Delivery]:
    """N small personalised messages (about 600 bytes each)."""
    out = []
    for i in range(n):
        msg = EmailMessage(policy=SMTP)
        msg["From"] = "Acme News <news@acme.example>"
        msg["To"] = f"c{i}@example.com"
        msg["Subject"] = f"Your spring edition, customer {i}"
        msg["Message-ID"] = f"<bench-{i}@acme.example>"
        msg.set_content(f"Hello customer {i},\n\nThis week's articles were chosen for you.\n" * 5)
        out.append(Delivery("bench", f"c{i}", f"c{i}@example.com", f"h{i}",
                            f"<bench-{i}@acme.example>", msg.as_bytes(), {}))
    return out


def run(items: list[Delivery], threads: int, send: Callable[[Delivery], None]) -> float:
    """Send every item from `threads` threads; returns the elapsed seconds."""
    work: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
    for d in items:
        work.put(d)

    def worker() -> None:
        while True:
            try:
                d = work.get_nowait()
            except queue.Empty:
                return
            send(d)

    start = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(600)
    return time.perf_counter() - start


def once(port: int, tmp: Path, items: list[Delivery], conns: int, ledger_mode: str | None,
         ledger_path: Path) -> tuple[float, int]:
    """One timed pass; returns (seconds, messages not sent)."""
    failures: list[str] = []
    with open_publisher(f"smtp://127.0.0.1:{port}", out_dir=tmp,
                        options={"connections": conns}) as pub:
        if ledger_mode is None:
            def send(d: Delivery) -> None:
                if pub.publish(d).status != "sent":
                    failures.append(d.customer_id)
            return run(items, conns, send), len(failures)
        with SendLedger(ledger_path) as ledger:
            def send_once(d: Delivery) -> None:
                if ledger.claim(d.campaign, d.customer_id, d.content_hash, "r1").may_send:
                    outcome = pub.publish(d)
                    ledger.record(d.campaign, d.customer_id, d.content_hash, outcome, "r1",
                                  defer=ledger_mode == "defer")
                    if outcome.status != "sent":
                        failures.append(d.customer_id)
            return run(items, conns, send_once), len(failures)


def commit_ms(folder: Path, n: int = 200) -> float:
    """Milliseconds per durable SQLite commit (WAL, synchronous=FULL) in `folder`."""
    import sqlite3

    db = sqlite3.connect(folder / "fsync.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (i INTEGER)")
    start = time.perf_counter()
    for i in range(n):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?)", (i,))
        db.execute("COMMIT")
    db.close()
    return (time.perf_counter() - start) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    port_q, stop = ctx.Queue(), ctx.Event()
    received, connections = ctx.Value("i", 0), ctx.Value("i", 0)
    sink = ctx.Process(target=counting_sink, args=(port_q, stop, received, connections),
                       daemon=True)
    sink.start()
    port = port_q.get(timeout=30)
    items = deliveries(args.messages)
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="edition-bench-"))
    scenarios: list[tuple[str, int, str | None]] = [
        ("one connection", 1, None),
        ("pool of 3", 3, None),
        ("one connection + ledger", 1, "immediate"),
        ("pool of 3 + ledger", 3, "immediate"),
        ("pool of 3 + ledger (defer)", 3, "defer"),
    ]
    for name, conns, ledger_mode in scenarios:
        runs = []
        for attempt in range(args.repeat):
            received.value = connections.value = 0
            ledger_path = tmp / f"{name.replace(' ', '_')}-{attempt}" / "ledger.sqlite"
            elapsed, failures = once(port, tmp, items, conns, ledger_mode, ledger_path)
            deadline = time.monotonic() + 10
            while received.value < len(items) and time.monotonic() < deadline:
                time.sleep(0.01)
            runs.append((elapsed, connections.value, received.value, failures))
        runs.sort()
        elapsed, conns_seen, got, failures = runs[len(runs) // 2]  # the median run
        rows.append((name, len(items), conns_seen, got, failures, elapsed, len(items) / elapsed))
    stop.set()
    sink.join(10)

    print(f"{args.messages} messages of ~{len(items[0].eml or b'')} bytes to aiosmtpd on "
          f"127.0.0.1, median of {args.repeat} runs; disk commit (fsync) "
          f"{commit_ms(tmp):.2f} ms")
    shutil.rmtree(tmp, ignore_errors=True)
    header = ("scenario", "messages", "connections", "received", "failed", "seconds", "msg/s")
    print(f"{header[0]:<28} {header[1]:>8} {header[2]:>11} {header[3]:>8} {header[4]:>6} "
          f"{header[5]:>8} {header[6]:>8}")
    for name, n, conns, got, failed, secs, rate in rows:
        print(f"{name:<28} {n:>8} {conns:>11} {got:>8} {failed:>6} {secs:>8.2f} {rate:>8.0f}")


if __name__ == "__main__":
    main()
