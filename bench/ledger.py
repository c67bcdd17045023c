"""Send ledger benchmark: PostgreSQL vs SQLite claims per second, side by side.

Each message is what delivery.py does per customer: `claim` (committed before the send)
then `record` of the outcome (deferred: committed with the next claim). Workers are
processes sharing one ledger without the run lock, as a run's process pool does; each
claims its own keys for a fixed time. Both ledgers are durable: SQLite in WAL with
synchronous=FULL, PostgreSQL (a throwaway cluster, tests/fixtures_postgres.py) with
fsync and synchronous_commit on, both on the same disk.

    .venv/bin/python bench/ledger.py [--seconds 6] [--workers 1,4] [--url postgresql://…]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fixtures_postgres import TemporaryPostgres  # noqa: E402

from edition.send.ledger.location import open_ledger, show_location  # noqa: E402
from publishers.base import Outcome  # noqa: E402

CAMPAIGN = "bench"


def worker(location: str, index: int, run: str, seconds: float, defer: bool,
           ready: mp.Barrier, results: mp.Queue, window: int = 0) -> None:
    """Claim + record fresh keys until the time is up; (claims, latencies) to `results`.

    `window` > 0: the batched path of `Deliverer.deliver_many` — `window` keys claimed in
    one commit that also commits the previous window's outcomes (deferred)."""
    sent = Outcome("sent", provider_id="250 ok")
    with open_ledger(location, exclusive=False) as ledger:
        ledger.claim(CAMPAIGN, f"warm-{run}-{index}", "k", run)  # connected, tables there
        ready.wait(120)
        deadline = time.perf_counter() + seconds
        claims, latencies = 0, []
        while window and (now := time.perf_counter()) < deadline:
            customers = [f"{run}-{index}-{claims + i}" for i in range(window)]
            ledger.claim_many(CAMPAIGN, [(c, "k", "h") for c in customers], run)
            latencies.append(time.perf_counter() - now)
            ledger.record_many(CAMPAIGN, [(c, "k", sent) for c in customers], run,
                               defer=True)
            claims += window
        while not window and (now := time.perf_counter()) < deadline:
            customer = f"{run}-{index}-{claims}"
            ledger.claim(CAMPAIGN, customer, "k", run, content_hash="h")
            latencies.append(time.perf_counter() - now)
            ledger.record(CAMPAIGN, customer, "k", sent, run, defer=defer)
            claims += 1
    results.put((claims, latencies))


def measure(location: str, workers: int, seconds: float, defer: bool, run: str,
            window: int = 0) -> tuple[float, float, float]:
    """(claims/s over all workers, median and 99th-percentile claim latency in ms; with a
    window, the latency of one window's commit)."""
    ctx = mp.get_context("spawn")
    ready, results = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(location, i, run, seconds, defer, ready,
                                              results, window)) for i in range(workers)]
    for proc in procs:
        proc.start()
    ready.wait(120)
    start = time.perf_counter()
    done = [results.get(timeout=seconds + 120) for _ in procs]
    elapsed = time.perf_counter() - start
    for proc in procs:
        proc.join(60)
    latencies = sorted(t for _, ts in done for t in ts)
    total = sum(n for n, _ in done)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return total / max(elapsed, seconds), statistics.median(latencies) * 1e3, p99 * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per measurement")
    parser.add_argument("--workers", default="1,4", help="worker process counts")
    parser.add_argument("--url", help="an existing PostgreSQL database instead of a "
                                      "throwaway cluster")
    parser.add_argument("--window", type=int, default=64,
                        help="messages in flight per worker on the batched path "
                             "(claim_many); 0 measures only today's path")
    parser.add_argument("--immediate", action="store_true",
                        help="also measure records committed one by one (defer=False)")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",") if w]
    modes = [True, False] if args.immediate else [True]

    with tempfile.TemporaryDirectory(prefix="edition-bench-ledger-") as tmp:
        server = None if args.url else TemporaryPostgres(fsync=True).start()
        try:
            postgres = args.url or server.create_database("bench")  # type: ignore[union-attr]
            backends = [("SQLite (WAL, synchronous=FULL)", str(Path(tmp) / "ledger.sqlite")),
                        ("PostgreSQL (fsync, synchronous_commit on)", postgres)]
            rows = []
            paths = [("one claim per commit", 0)]
            if args.window:
                paths.append((f"claim_many, {args.window} in flight", args.window))
            for defer in modes:
                for workers in counts:
                    for name, location in backends:
                        for path, window in paths:  # today's and the batched, interleaved
                            run = f"r{len(rows)}"
                            rate, p50, p99 = measure(location, workers, args.seconds, defer,
                                                     run, window)
                            rows.append((name, workers, defer, rate, p50, p99, path))
                            print(f"  {name}, {workers} worker(s), {path}: {rate:,.0f} "
                                  "claims+records/s", file=sys.stderr)
        finally:
            if server is not None:
                server.stop()

    print(f"\n## Send ledger: claim + record per message, {args.seconds:g} s per row, "
          f"{os.cpu_count()} cores (load {os.getloadavg()[0]:.1f})\n")
    if args.url:
        print(f"PostgreSQL: {show_location(args.url)}\n")
    print("| ledger | workers | path | record | claims+records/s | vs one claim per commit "
          "| vs SQLite | commit p50 ms | commit p99 ms |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, workers, defer, rate, p50, p99, path in rows:
        sqlite = next(r[3] for r in rows if r[1] == workers and r[2] == defer
                      and r[0].startswith("SQLite") and r[6] == path)
        today = next(r[3] for r in rows if r[0] == name and r[1] == workers
                     and r[2] == defer and r[6] == paths[0][0])
        print(f"| {name} | {workers} | {path} | {'deferred' if defer else 'each'} | "
              f"{rate:,.0f} | {rate / today:.2f}× | {rate / sqlite:.2f}× | {p50:.2f} | "
              f"{p99:.2f} |")


if __name__ == "__main__":
    main()
