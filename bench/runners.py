"""send-campaign's task runners side by side: thread, process, Dask, and the plain CLI.

One run, same generated customers, same campaign (the sample weekly newsletter, html +
text + eml), each variant writing its own output folder; prints customers/s for each and
the ratio to the CLI's process pool (`edition.run.lifecycle.execute` with a ProcessPoolExecutor,
what `edition run` does without --via-prefect). The flows run on Prefect's test server
(`prefect_test_harness`), so nothing needs PREFECT_API_URL. Also checks that every
variant wrote the same manifest.

    .venv/bin/python bench/runners.py [--customers 20000] [--batch-size 1000] [--workers N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")  # cluster shutdown chatter

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = ROOT / "campaigns" / "weekly-newsletter.yaml"
AS_OF = dt.date(2026, 11, 23)
STARTED = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run_cli(data: Path, out: Path, batch_size: int, workers: int) -> float:
    from edition.run.executors import Pool
    from edition.run.lifecycle import execute
    from edition.run.options import RunOptions

    options = RunOptions(campaign=str(CAMPAIGN), customers=str(data), out=str(out),
                         formats=("html", "text", "eml"), as_of=AS_OF, batch_size=batch_size,
                         run_id="bench", started=STARTED)
    start = time.perf_counter()
    with Pool(workers) as pool:
        execute(options, executor=pool)
    return time.perf_counter() - start


def run_flow(runner: str, data: Path, out: Path, batch_size: int, workers: int) -> float:
    from flows.campaign import RunSettings, send_campaign

    start = time.perf_counter()
    result = send_campaign(
        campaign=str(CAMPAIGN), customers=str(data), formats=["html", "text", "eml"],
        as_of=AS_OF, advanced=RunSettings(out=str(out), batch_size=batch_size,
                                          task_runner=runner, workers=workers,
                                          run_id="bench", started=STARTED))
    seconds = time.perf_counter() - start
    assert result["customers"] > 0
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--runners", default="thread,process,dask")
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    from edition.audience.sampledata import write_customers

    work = Path(tempfile.mkdtemp(prefix="edition-bench-runners-"))
    try:
        data = work / f"customers-{args.customers}.csv"
        write_customers(data, args.customers, seed=7)
        print(f"{args.customers:,} customers, batches of {args.batch_size}, "
              f"{args.workers} workers, {os.cpu_count()} CPUs; output under {work}")
        results: list[tuple[str, float, str]] = []
        seconds = run_cli(data, work / "cli", args.batch_size, args.workers)
        results.append(("CLI: execute + ProcessPoolExecutor", seconds,
                        digest(work / "cli" / "manifest.jsonl")))
        print(f"  cli done in {seconds:.1f} s")
        with prefect_test_harness(server_startup_timeout=120):
            for runner in args.runners.split(","):
                out = work / runner
                seconds = run_flow(runner, data, out, args.batch_size, args.workers)
                results.append((f"flow send-campaign, {runner} runner", seconds,
                                digest(out / "manifest.jsonl")))
                print(f"  {runner} done in {seconds:.1f} s")
        base = results[0][1]
        print()
        print(f"| {'variant':<38} | {'seconds':>7} | {'customers/s':>11} | {'vs CLI':>6} |")
        print(f"|{'-' * 40}|{'-' * 9}|{'-' * 13}|{'-' * 8}|")
        for name, secs, _ in results:
            print(f"| {name:<38} | {secs:7.1f} | {args.customers / secs:11,.0f} | "
                  f"{base / secs:5.2f}x |")
        same = len({d for _, _, d in results}) == 1
        print(f"\nmanifests identical across variants: {'yes' if same else 'NO'}")
        if not same:
            raise SystemExit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
