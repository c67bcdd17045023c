"""The per-customer hot path, in one process: `Pipeline.process` over warm batches.

    .venv/bin/python bench/hotpath.py                        # this checkout, one figure
    .venv/bin/python bench/hotpath.py --against /tmp/before  # two checkouts, interleaved
    .venv/bin/python bench/hotpath.py --profile 25           # cProfile's top entries
    .venv/bin/python bench/hotpath.py --base 01c9b4b --campaigns weekly-newsletter
                                        # beside an older commit (issue 18: no slower)
    .venv/bin/python bench/hotpath.py --cli --against /tmp/before   # the real CLI

What the CLI's marginal rate is made of, without start-up, Prefect or the customer file:
the sample weekly newsletter and every layout of the outside corpus (tests/corpus),
html+text+eml, their customers read once, one warm-up pass (versions rendered once,
shapes inlined once), then `--rounds` timed passes of every batch into a folder on
tmpfs. `--cli` times the real command line instead (as bench/corpus.py does: the
marginal rate between a sixth of the customers and all of them, start-up left out).
With `--against DIR` (another checkout with its own `.venv`), each checkout runs
in its own subprocess, alternating round by round, and the table sets them side by side:
the machine is shared, so only the ratios measured in one run mean anything (the
in-process figures count the process's CPU time, which others' load barely moves; the
CLI's are wall clock).

`--base REF` compares with an older commit without a venv of its own: a detached
worktree of REF (made once, under the temp folder) runs in this interpreter with its
own tree first on `sys.path`, so it imports its own `edition`; each tree renders its
own sample content (campaigns, templates, modules) over the same customer file. Links
are signed (a secret in the environment) as they are when a run sends.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
AS_OF = "2026-11-02"


def prepare(site: Path, customers: int) -> dict[str, Path]:
    """The corpus site with the sample content, and a customer file per campaign."""
    sys.path.insert(0, str(HERE / "tests"))
    from fixtures_corpus import NAMES, corpus_site, write_corpus_customers

    from edition.audience.sampledata import write_customers

    corpus_site(site)
    write_customers(site / "sample.csv", customers, seed=7)
    sample = site / "sample.csv"
    corpus = write_corpus_customers(site / "corpus.jsonl", customers)
    return {"weekly-newsletter": Path(sample)} | {name: corpus for name in NAMES}


def own_site(tree: Path, site: Path) -> Path:
    """`site` with the sample content of another tree (its campaigns, templates,
    modules), the same outside layouts and the same customer files."""
    import re

    from fixtures_corpus import CONTENT_DIRS, NAMES

    own = site.parent / f"site-{tree.name}"
    if not own.exists():
        shutil.copytree(site, own)
        for folder in CONTENT_DIRS:
            shutil.copytree(tree / folder, own / folder, dirs_exist_ok=True)
        for module in [*own.glob("articles/*.md"), *own.glob("offers/*.md"),
                       *own.glob("greetings/*.md")]:   # for the layouts too (corpus_site)
            text = module.read_text(encoding="utf-8")
            module.write_text(re.sub(r"^campaigns: \[weekly-newsletter",
                                     "campaigns: [" + ", ".join(NAMES) + ", weekly-newsletter",
                                     text, count=1, flags=re.M), encoding="utf-8")
    return own


def base_tree(ref: str) -> Path:
    """A detached worktree of `ref` (made once and kept, for later runs)."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=HERE, check=True,
                            capture_output=True, text=True).stdout.strip()
    tree = Path(tempfile.gettempdir()) / f"edition-base-{commit}"
    if not (tree / "edition").is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=HERE,
                       check=True, capture_output=True)
    return tree


def _open_pipeline(options: Any) -> tuple[Any, Any]:
    """The warm pipeline of these options and how to close it, in this tree's layout
    (`run/workers.py` now; `run/lifecycle.py` before issue 18 split it)."""
    try:
        from edition.run import workers
    except ImportError:   # 01c9b4b and older
        from edition.run import lifecycle

        return lifecycle.pipeline_for(options), lifecycle.close_pipelines
    return workers.pipeline_for(options), workers.close_jobs


def child(site: Path, campaigns: list[str], rounds: int, profile: int) -> None:
    """One checkout's timings (run inside that checkout's interpreter): JSON on stdout."""
    from edition.audience.customers import read_customers
    from edition.run.options import RunOptions

    out_root = Path(tempfile.mkdtemp(prefix="edition-hotpath-", dir=_tmpfs()))
    timings: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    close: Any = None
    try:
        jobs = []
        for name in campaigns:
            customers = site / ("sample.csv" if name == "weekly-newsletter" else "corpus.jsonl")
            options = RunOptions.build(
                campaign=str(site / "campaigns" / f"{name}.yaml"), customers=str(customers),
                out=str(out_root / name), formats=("html", "text", "eml"),
                as_of=AS_OF).resolved()
            rows = list(read_customers(customers, need_email=False))
            size = options.batch_size
            batches = [rows[i:i + size] for i in range(0, len(rows), size)]
            pipeline, close = _open_pipeline(options)
            for batch in batches:   # warm: versions rendered, shapes inlined once
                pipeline.process(batch)
            jobs.append((name, pipeline, batches))
            counts[name] = len(rows)
        profiler = cProfile.Profile() if profile else None
        for _ in range(rounds):
            for name, pipeline, batches in jobs:
                if profiler is not None:
                    profiler.enable()
                start = time.process_time()   # this process's CPU: others' load cancels
                for batch in batches:
                    pipeline.process(batch)
                timings.setdefault(name, []).append(time.process_time() - start)
                if profiler is not None:
                    profiler.disable()
        if profiler is not None:
            stats = pstats.Stats(profiler, stream=sys.stderr)
            stats.sort_stats("tottime").print_stats(profile)
            stats.sort_stats("cumulative").print_stats(profile)
    finally:
        if close is not None:
            close()
        shutil.rmtree(out_root, ignore_errors=True)
    import edition

    print(json.dumps({"timings": timings, "counts": counts, "edition": edition.__file__}))


def _tmpfs() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def run_child(python: str, code: Path, site: Path, campaigns: list[str], rounds: int,
              profile: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.setdefault("EDITION_UNSUBSCRIBE_SECRET", "hotpath-bench-" + "s" * 32)
    if python == sys.executable and code != HERE:   # --base: that tree's own `edition`
        env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")])
        site = own_site(code, site)
    cmd = [python, str(HERE / "bench" / "hotpath.py"), "--child", str(site),
           "--campaigns", ",".join(campaigns), "--rounds", str(rounds),
           "--profile", str(profile)]
    done = subprocess.run(cmd, cwd=code, capture_output=True, text=True, check=False,
                          env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{code}: exit {done.returncode}\n{done.stderr[-4000:]}")
    if profile:
        print(f"### profile of {code}\n{done.stderr}", file=sys.stderr)
    got: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(got["edition"]).resolve().is_relative_to(code.resolve()):
        raise SystemExit(f"{code}: the child imported {got['edition']}")
    return got


def pipeline_rates(trees: list[tuple[str, str, Path]], site: Path, campaigns: list[str],
                   args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Per checkout and campaign: customers/s through warm `Pipeline.process`."""
    best: dict[str, dict[str, float]] = {label: {} for label, *_ in trees}
    counts: dict[str, int] = {}
    for _ in range(args.repeat):   # alternate the checkouts: the load is shared
        for label, python, code in trees:
            got = run_child(python, code, site, campaigns, args.rounds, args.profile)
            counts = got["counts"]
            for name, walls in got["timings"].items():
                best[label][name] = min(best[label].get(name, float("inf")), *walls)
    return {label: {n: counts[n] / w for n, w in walls.items()} for label, walls in best.items()}


def cli_rates(trees: list[tuple[str, str, Path]], site: Path, campaigns: list[str],
              customers: int, repeat: int) -> dict[str, dict[str, float]]:
    """Per checkout and campaign: the CLI's marginal rate, the checkouts interleaved."""
    small = max(customers // 6, 100)
    best: dict[tuple[str, str, int], float] = {}
    cpu: dict[tuple[str, str, int], float] = {}
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", NO_COLOR="1")
    for _ in range(repeat):
        for name in campaigns:
            source = site / ("sample.csv" if name == "weekly-newsletter" else "corpus.jsonl")
            for n in (small, customers):
                for label, python, _code in trees:
                    out = Path(tempfile.mkdtemp(prefix="edition-hotpath-cli-", dir=_tmpfs()))
                    cmd = [python, "-m", "cli", "run", str(site / "campaigns" / f"{name}.yaml"),
                           "--customers", str(source), "--formats", "html,text,eml",
                           "--as-of", AS_OF, "--out", str(out / "run"), "--limit", str(n)]
                    start, used = time.perf_counter(), _children_cpu()
                    done = subprocess.run(cmd, cwd=site, env=env, capture_output=True,
                                          text=True, check=False, timeout=3600)
                    wall = time.perf_counter() - start
                    key = (label, name, n)
                    cpu[key] = min(cpu.get(key, float("inf")), _children_cpu() - used)
                    shutil.rmtree(out, ignore_errors=True)
                    if done.returncode != 0:
                        raise SystemExit(f"{label} {name}: exit {done.returncode}\n"
                                         f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
                    best[key] = min(best.get(key, float("inf")), wall)
    for (label, name, n), seconds in cpu.items():
        if n == customers:   # the CPU of the whole process tree (the pool's workers too)
            rate = (customers - small) / max(seconds - cpu[(label, name, small)], 1e-9)
            print(f"{label} {name}: marginal {rate:,.0f} customers per CPU second "
                  "(the CLI's process tree)", file=sys.stderr)
    return {label: {name: (customers - small) / max(best[(label, name, customers)]
                                                     - best[(label, name, small)], 1e-9)
                    for name in campaigns} for label, *_ in trees}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def floor_cpu(site: Path, customers: int) -> float:
    """The floor loop (bench/floor.py), in this process: customers per CPU second."""
    sys.path.insert(0, str(HERE / "bench"))
    import floor

    out = Path(tempfile.mkdtemp(prefix="edition-hotpath-floor-", dir=_tmpfs()))
    try:
        sample = out / "sample"
        subprocess.run([sys.executable, "-m", "cli", "run",
                        str(site / "campaigns" / "weekly-newsletter.yaml"), "--customers",
                        str(site / "sample.csv"), "--formats", "html,text,eml", "--as-of",
                        AS_OF, "--out", str(sample), "--limit", "500"], cwd=site, check=True,
                       capture_output=True, env=dict(os.environ, NO_COLOR="1"), timeout=3600)
        versions = floor.load_versions(sample, site / "sample.csv")
        rows = floor.read_rows(site / "sample.csv", customers)
        start = time.process_time()
        floor.loop(versions, rows, out / "floor")
        return len(rows) / (time.process_time() - start)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per child")
    parser.add_argument("--repeat", type=int, default=2, help="children per checkout")
    parser.add_argument("--against", type=Path, help="another checkout (with .venv)")
    parser.add_argument("--base", help="a commit to compare with, run in this interpreter")
    parser.add_argument("--campaigns", default="", help="comma-separated; default all")
    parser.add_argument("--profile", type=int, default=0, help="print N top entries")
    parser.add_argument("--cli", action="store_true", help="time the real CLI")
    parser.add_argument("--floor", action="store_true",
                        help="with --cli: the CPU per customer of the CLI and the floor loop")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.base and (args.cli or args.against):
        parser.error("--base times Pipeline.process only, and stands for --against")
    if args.child:
        child(args.child, args.campaigns.split(","), args.rounds, args.profile)
        return
    with tempfile.TemporaryDirectory(prefix="edition-hotpath-site-") as tmp:
        files = prepare(Path(tmp) / "site", args.customers)
        campaigns = args.campaigns.split(",") if args.campaigns else list(files)
        trees = [("this", sys.executable, HERE)]
        if args.against:
            trees.append(("against", str(args.against / ".venv" / "bin" / "python"),
                          args.against))
        elif args.base:
            trees.append(("against", sys.executable, base_tree(args.base)))
        if args.cli:
            rates = cli_rates(trees, Path(tmp) / "site", campaigns, args.customers,
                              args.repeat)
            what = "the CLI's marginal rate"
            if args.floor:
                print(f"floor loop: {floor_cpu(Path(tmp) / 'site', args.customers):,.0f} "
                      "customers per CPU second", file=sys.stderr)
        else:
            rates = pipeline_rates(trees, Path(tmp) / "site", campaigns, args)
            what = "Pipeline.process, warm, per CPU second of its process"
    print(f"## {what}, html+text+eml, {args.customers:,} customers (best of "
          f"{args.repeat}; load average {os.getloadavg()[0]:.1f})\n")
    head = "| campaign | this: customers/s | × sample |"
    if len(trees) > 1:
        head += " against: customers/s | × sample | this ÷ against |"
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for name in campaigns:
        line = f"| {name} |"
        for label, *_ in trees:
            r = rates[label][name]
            line += f" {r:,.0f} | {r / rates[label]['weekly-newsletter']:.2f} |"
        if len(trees) > 1:
            line += f" {rates['this'][name] / rates['against'][name]:.2f} |"
        print(line)


if __name__ == "__main__":
    main()
