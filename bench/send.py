"""The send path, today's and the overlapped one, side by side in one run.

Each row sends the same messages through `Deliverer` (ledger claim, SMTP, ledger record)
to an aiosmtpd sink in its own process on 127.0.0.1, whose DATA reply waits `--latency`
ms (a remote relay's round trip; 0 = loopback). Today's path: `deliver`, one message at
a time, one connection. The new path: `deliver_many`, `--in-flight` messages claimed per
commit and published on as many pooled connections. Ledgers: SQLite (WAL,
synchronous=FULL) and PostgreSQL (a throwaway cluster with fsync on).

    .venv/bin/python bench/send.py [--messages 1500] [--latency 0,20] [--in-flight 32]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fixtures_delivery import make_eml  # noqa: E402
from fixtures_postgres import TemporaryPostgres  # noqa: E402
from smtp_sink import counting_sink  # noqa: E402  (bench/: one sink for both benches)

from edition.send.delivery import Deliverer, Message  # noqa: E402


def messages(n: int, run: str) -> list[Message]:
    out = []
    for i in range(n):
        cid = f"{run}-{i:06d}"
        eml, message_id = make_eml(cid, f"{cid}@example.com", size=2000)
        out.append(Message(customer_id=cid, recipient=f"{cid}@example.com",
                           digest=f"d{cid}", message_id=message_id,
                           files={"eml": ("message.eml", eml, "message/rfc822")}))
    return out


def once(port: int, ledger: str, items: list[Message], in_flight: int, out: Path,
         run: str) -> float:
    """Seconds to send `items` (0 = today's path, one message at a time)."""
    deliverer = Deliverer(target=f"smtp://127.0.0.1:{port}",
                          options={"connections": max(1, in_flight)}, ledger=ledger,
                          campaign="bench", mailing="m1", run_id=run, out_dir=out)
    try:
        start = time.perf_counter()
        if in_flight:
            sent = deliverer.deliver_many(items, in_flight=in_flight)
        else:
            sent = [deliverer.deliver(customer_id=m.customer_id, recipient=m.recipient,
                                      digest=m.digest, message_id=m.message_id,
                                      files=m.files) for m in items]
        deliverer.flush()
        elapsed = time.perf_counter() - start
    finally:
        deliverer.close()
    bad = [s for s in sent if s.status != "sent"]
    if bad:
        raise SystemExit(f"{len(bad)} not sent: {bad[0]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--latency", default="0,20", help="sink reply delay(s), ms")
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory(prefix="edition-bench-send-") as tmp:
        server = TemporaryPostgres(fsync=True).start()
        try:
            for latency in [float(x) for x in args.latency.split(",") if x]:
                port_q, stop = ctx.Queue(), ctx.Event()
                received, most = ctx.Value("i", 0), ctx.Value("i", 0)
                sink = ctx.Process(target=counting_sink, daemon=True,
                                   args=(port_q, stop, received, None, most, latency / 1000))
                sink.start()
                port = port_q.get(timeout=60)
                # today's path is slow with latency: fewer messages keep the run short
                todays = max(100, args.messages // (1 + int(latency)))
                for name, ledger in (("SQLite", str(Path(tmp) / f"l{latency}.sqlite")),
                                     ("PostgreSQL", server.create_database())):
                    for path, window, n in (("deliver, 1 at a time", 0, todays),
                                            (f"deliver_many, {args.in_flight} in flight",
                                             args.in_flight, args.messages)):
                        run = f"r{len(rows)}"
                        most.value = 0
                        elapsed = once(port, ledger, messages(n, run), window, Path(tmp), run)
                        rows.append((latency, name, path, n, n / elapsed, most.value))
                        print(f"  {latency:g} ms, {name}, {path}: {n / elapsed:,.0f} msg/s",
                              file=sys.stderr)
                stop.set()
                sink.join(30)
        finally:
            server.stop()

    print(f"\n## Send path: claim + SMTP + record per message, {os.cpu_count()} cores "
          f"(load {os.getloadavg()[0]:.1f})\n")
    print("| sink latency | ledger | path | messages | msg/s | vs 1 at a time | "
          "most held by the sink at once |")
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: |")
    for latency, name, path, n, rate, held in rows:
        base = next(r[4] for r in rows if r[0] == latency and r[1] == name)
        print(f"| {latency:g} ms | {name} | {path} | {n:,} | {rate:,.0f} | "
              f"{rate / base:.2f}× | {held} |")


if __name__ == "__main__":
    main()
