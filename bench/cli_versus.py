"""The whole CLI's marginal rate against other checkouts, side by side in one run.

    .venv/bin/python bench/cli_versus.py --against /tmp/main --against /tmp/old \
        --small 1000 --big 5000 --repeat 2

Each checkout runs its own sample weekly newsletter (its own campaigns/, templates/ and
modules: older code may not read newer campaign keys) on the same customers
(`edition sample-data --seed 7`, made once by this checkout), html + text + eml, output
on tmpfs, through its own command line (`python -m cli run …`; a checkout without its own
`.venv` runs on this one's interpreter with PYTHONPATH set to it). The checkouts
alternate run by run, so they share the load. Per checkout: the marginal rate between
`--small` and `--big` customers in wall time and in CPU time of the whole process tree
(the pool's workers too), and that CPU rate as a share of the floor loop's CPU rate
(bench/floor.py: fill, base64, three files, one process) — the figure of issue 19's
"CLI toward the floor". Fixed costs (imports, plan, pool start) cancel in a marginal
rate; the machine is shared, so only ratios within one run mean much.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CAMPAIGN = "campaigns/weekly-newsletter.yaml"
AS_OF = "2026-11-23"
CONTENT = ("campaigns", "templates", "articles", "offers", "greetings")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def site_of(code: Path, where: Path) -> Path:
    """A content root with this checkout's own sample content."""
    for folder in CONTENT:
        if (code / folder).is_dir():
            shutil.copytree(code / folder, where / folder)
    return where


def python_of(code: Path) -> tuple[str, dict[str, str]]:
    own = code / ".venv" / "bin" / "python"
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", NO_COLOR="1",
               DO_NOT_TRACK="1")
    env.pop("EDITION_UNSUBSCRIBE_SECRET", None)
    if own.exists():
        return str(own), env
    return sys.executable, env | {"PYTHONPATH": str(code)}


def run_once(code: Path, site: Path, customers: Path, n: int, work: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process tree) of one `edition run`."""
    python, env = python_of(code)
    out = Path(tempfile.mkdtemp(prefix="cli-versus-", dir=work)) / "run"
    cmd = [python, "-m", "cli", "run", CAMPAIGN, "--customers", str(customers), "--formats",
           "html,text,eml", "--as-of", AS_OF, "--out", str(out), "--limit", str(n)]
    used, start = _cpu(), time.perf_counter()
    done = subprocess.run(cmd, cwd=site, env=env, capture_output=True, text=True,
                          check=False, timeout=3600)
    wall, cpu = time.perf_counter() - start, _cpu() - used
    rows = (out / "manifest.jsonl").read_text(encoding="utf-8").count("\n") \
        if (out / "manifest.jsonl").exists() else 0
    shutil.rmtree(out.parent, ignore_errors=True)
    if done.returncode != 0 or rows != n:
        raise SystemExit(f"{code}: exit {done.returncode}, {rows} manifest rows\n"
                         f"{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    return wall, cpu


def floor_cpu(site: Path, customers: Path, n: int, work: Path) -> float:
    """The floor loop in this process on this checkout's versions: customers per CPU s."""
    sys.path.insert(0, str(BENCH))
    import floor

    python, env = python_of(ROOT)
    sample = Path(tempfile.mkdtemp(prefix="cli-versus-floor-", dir=work))
    try:
        subprocess.run([python, "-m", "cli", "run", CAMPAIGN, "--customers", str(customers),
                        "--formats", "html,text,eml", "--as-of", AS_OF, "--out",
                        str(sample / "run"), "--limit", "1000"], cwd=site, env=env,
                       check=True, capture_output=True, timeout=3600)
        versions = floor.load_versions(sample / "run", customers)
        rows = floor.read_rows(customers, n)
        start = time.process_time()
        floor.loop(versions, rows, sample / "floor")
        return len(rows) / (time.process_time() - start)
    finally:
        shutil.rmtree(sample, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", type=Path, action="append", default=[],
                        help="another checkout (repeatable)")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--big", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=2, help="runs per size: best of")
    args = parser.parse_args()
    codes = [ROOT, *args.against]
    work = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="cli-versus-") as tmp:
        base = Path(tmp)
        customers = base / "customers.csv"
        python, env = python_of(ROOT)
        subprocess.run([python, "-m", "cli", "sample-data", "--customers", str(args.big),
                        "--seed", "7", "--out", str(customers)], env=env, check=True,
                       capture_output=True, timeout=600)
        sites = [site_of(code, base / f"site-{i}") for i, code in enumerate(codes)]
        # per checkout, per round: (wall, CPU) seconds of the small and the big run, made
        # back to back, so a round's marginal sees one load (the load moves between rounds)
        walls: dict[int, list[float]] = {i: [] for i in range(len(codes))}
        cpus: dict[int, list[float]] = {i: [] for i in range(len(codes))}
        for _ in range(args.repeat):   # alternating: the checkouts share the load
            for i, code in enumerate(codes):
                got = {n: run_once(code, sites[i], customers, n, work or base)
                       for n in (args.small, args.big)}
                walls[i].append(got[args.big][0] - got[args.small][0])
                cpus[i].append(got[args.big][1] - got[args.small][1])
                print(f"{code}: " + ", ".join(f"{n:,} customers {w:.2f} s wall, {c:.2f} s CPU"
                                              for n, (w, c) in got.items()),
                      file=sys.stderr, flush=True)
        floor = floor_cpu(sites[0], customers, args.big, work or base)
    extra = args.big - args.small
    print(f"## The CLI's marginal rate {args.small:,} → {args.big:,} customers, html+text+eml, "
          f"best of {args.repeat} (load average {os.getloadavg()[0]:.1f}); floor loop "
          f"{floor:,.0f} customers per CPU second\n")
    print("| checkout | wall rate (customers/s) | × this | CPU rate (customers per CPU s) "
          "| × this | CPU µs per customer | % of the floor (CPU) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rates = {}
    for i in range(len(codes)):   # the best round (the least disturbed)
        w = extra / max(min(walls[i]), 1e-9)
        c = extra / max(min(cpus[i]), 1e-9)
        rates[i] = (w, c)
    for i, code in enumerate(codes):
        w, c = rates[i]
        name = "this" if i == 0 else str(code)
        print(f"| {name} | {w:,.0f} | {w / rates[0][0]:.2f} | {c:,.0f} | {c / rates[0][1]:.2f} "
              f"| {1e6 / c:,.0f} | {c / floor:.0%} |")


if __name__ == "__main__":
    main()
