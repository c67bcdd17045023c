"""The benchmark of issues 13 and 11: every row measured side by side in one run.

    .venv/bin/python bench/run.py            # default sizes (`make bench`, < 10 minutes)
    .venv/bin/python bench/run.py --quick    # a smoke run of every row, small sizes
    .venv/bin/python bench/run.py --million  # plus peak RSS at 1,000,000 customers

Everything runs the sample weekly newsletter (html + text + eml, the sample content) on
customers from `edition sample-data --seed 7`, through the real command line in
subprocesses (`python -m cli run campaigns/weekly-newsletter.yaml --customers F --out DIR
--as-of 2026-11-23`), output on tmpfs (/dev/shm) unless said otherwise, so the figures
are the engine's, not this machine's virtual disk. Rows:

- CLI wall at 1,000 and the marginal rate 1,000 -> 20,000 (fixed costs cancel), for this
  checkout and for the original code at /work/baseline (its own CLI and content);
- the floor loop (bench/floor.py) on 1 and 2 processes, and the CLI's distance to it;
- `--via-prefect`: the 1,000-customer wall on Prefect's ephemeral server (what a user
  without PREFECT_API_URL gets) and the marginal rate of the thread (default), process
  and Dask (1 and 2 workers) task runners against a running `prefect server`;
- the served deployment: `prefect server start` + `edition serve`, a flow run started
  with `run_deployment`, request to Completed, against the CLI on the same customers;
- PDF (bench/pdf.py's campaign: every customer's text different) against the naive
  WeasyPrint loop; peak RSS of the process tree (psutil) at 10,000 and 100,000;
- the send ledger, SQLite vs PostgreSQL (bench/ledger.py), and the run folder in S3
  (moto's server) against a local one; a paragraph on 10 million customers.

The machine is shared: rates are only compared with rates measured in the same run.
Results go to stdout and to bench/results.md. A row that cannot be measured (a crash,
a wrong output) says so with the command, and the rest still runs.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))  # this checkout's edition/, renderers/ (bench/ is [0])

PY = sys.executable
CAMPAIGN = "campaigns/weekly-newsletter.yaml"
AS_OF = "2026-11-23"
BASELINE = Path(os.environ.get("EDITION_BASELINE", "/work/baseline"))
RESULTS = BENCH / "results.md"
MIB = 2**20


# -- sizes ---------------------------------------------------------------------------

@dataclass
class Sizes:
    small: int = 1_000            # CLI wall; the small end of every marginal rate
    big: int = 20_000             # the big end of the CLI's marginal rate; floor loop
    repeat: int = 2               # CLI small runs and floor loops: best of (shared machine)
    floor: int = 10_000           # customers through the floor loop
    flow_big: int = 20_000        # the big end of the flows' marginal rates (as the CLI's)
    served: int = 2_000           # the served deployment's run (and the CLI on the same)
    served_runs: int = 2          # requests through the API (the mean is the row)
    rss: tuple[int, int] = (10_000, 100_000)
    s3: int = 500                 # run folder in S3 (moto) vs local
    ledger_seconds: float = 3.0
    ledger_workers: tuple[int, ...] = (1, 2)
    pdf: tuple[int, int, int] = (4_010, 45, 40)   # customers, versions, naive sample
    runners: tuple[str, ...] = ("thread", "process", "dask:1", "dask:2")


# a smoke run of every row but Dask's (`--only prefect --runners …` adds them)
QUICK = Sizes(small=300, big=2_000, repeat=1, floor=2_000, flow_big=1_000, served=300,
              served_runs=1, rss=(2_000, 6_000), s3=100, ledger_seconds=1.0,
              ledger_workers=(1,), pdf=(200, 6, 6), runners=("thread",))


# -- running things ------------------------------------------------------------------

# the sample content speaks English and Spanish: every regional variant of them gets
# articles (and is a version key of its own), others would only be excluded
LOCALES = [f"{lang}{region}" for lang in ("en", "es")
           for region in ("", "-GB", "-US", "-IE", "-AU", "-CA", "-ES", "-MX", "-AR", "-CO",
                          "-CL", "-419")]


def high_cardinality(sample: Path, folder: Path) -> Path:
    """The sample customers with free-text interests (two words of their own each, kept
    beside the sample's) and one of 24 locales: as many interest sets as customers."""
    path = folder / f"cardinality-{sample.name}"
    if path.exists():
        return path
    with sample.open(encoding="utf-8", newline="") as src, \
            path.open("w", encoding="utf-8", newline="") as dst:
        rows = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=list(rows.fieldnames or []))
        writer.writeheader()
        for i, row in enumerate(rows):
            words = [w for w in (row.get("interests") or "").split(";") if w]
            row["interests"] = ";".join([*words, f"hobby {i}", f"note-{i * 7919 % 100003}"])
            row["locale"] = LOCALES[i % len(LOCALES)]
            writer.writerow(row)
    return path


@dataclass
class Measured:
    seconds: float
    peak: int                     # bytes: RSS summed over the process tree, sampled
    rc: int
    stdout: str
    stderr: str
    cmd: list[str]
    cpu: float = 0.0              # CPU seconds of the process tree (its waited children)

    def failure(self) -> str:
        tail = (self.stderr or self.stdout).strip().splitlines()[-6:]
        return (f"exit {self.rc}: `{' '.join(self.cmd)}`: " + " / ".join(tail))[:900]


class Failed(Exception):
    """A measurement that could not be made; its message goes into the table."""


def watch(cmd: list[str], env: dict[str, str], cwd: Path, log: Path,
          timeout: float = 1800) -> Measured:
    """Run `cmd`; its wall seconds and the peak RSS summed over its process tree."""
    with log.with_suffix(".out").open("w+b") as out, log.with_suffix(".err").open("w+b") as err:
        start, used = time.perf_counter(), children_cpu()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        root, peak = psutil.Process(proc.pid), 0
        while True:
            try:
                proc.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pass
            if time.perf_counter() - start > timeout:
                proc.kill()
                proc.wait()
                break
            with contextlib.suppress(psutil.Error):
                tree = [root, *root.children(recursive=True)]
                total = 0
                for p in tree:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
                peak = max(peak, total)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return Measured(seconds, peak, proc.returncode, out.read().decode(errors="replace"),
                        err.read().decode(errors="replace"), cmd, children_cpu() - used)


def children_cpu() -> float:
    """CPU seconds of this process's finished children (a child's pool workers too)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def manifest_digest(lines: list[str]) -> str:
    """What each customer got (not when): id, status, version, segments, modules."""
    h = hashlib.sha256()
    for line in lines:
        row = json.loads(line)
        h.update(json.dumps([row.get("customer_id"), row.get("status"), row.get("version"),
                             row.get("segments"), row.get("modules")]).encode() + b"\n")
    return h.hexdigest()[:16]


def check_folder(out: Path, n: int) -> str:
    """The run folder holds n rendered customers and their files; the manifest digest."""
    manifest = out / "manifest.jsonl"
    if not manifest.is_file():
        raise Failed(f"no manifest.jsonl in {out}")
    lines = manifest.read_text(encoding="utf-8").splitlines()
    statuses = {json.loads(line)["status"] for line in lines}
    if len(lines) != n or statuses != {"rendered"}:
        raise Failed(f"{out}/manifest.jsonl: {len(lines)} rows, statuses {sorted(statuses)}; "
                     f"expected {n} rendered")
    for kind in ("html", "text", "eml"):
        found = sum(1 for _ in os.scandir(out / kind))
        if found != n:
            raise Failed(f"{out}/{kind}: {found} files for {n} customers")
    return manifest_digest(lines)


# -- the table -----------------------------------------------------------------------

@dataclass
class Row:
    what: str
    measured: str
    target: str
    verdict: str
    bounds: str


def at_most(value: float, target: float, unit: str = " s") -> str:
    if value <= target:
        return "**met**"
    return f"**missed** by {value - target:,.1f}{unit} ({value / target:.1f}× the target)"


def at_least(value: float, target: float) -> str:
    if value >= target:
        return "**met**"
    return f"**missed**: {value / target:.2f}× the target"


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def marginal(small: tuple[int, float], big: tuple[int, float]) -> float:
    (n1, t1), (n2, t2) = small, big
    if t2 <= t1:
        return float("inf")
    return (n2 - n1) / (t2 - t1)


# -- the bench -----------------------------------------------------------------------

@dataclass
class Bench:
    args: argparse.Namespace
    sizes: Sizes
    work: Path                                    # tmpfs when there is one
    disk: Path                                    # on the disk (customers, 1M run)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    phases: list[tuple[str, float]] = field(default_factory=list)
    fig: dict[str, Any] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    count: int = 0

    # -- plumbing ----------------------------------------------------------------------

    def env(self, code: Path = ROOT, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PREFECT_", "EDITION_", "AWS_"))}
        env.update({"PYTHONPATH": str(code), "PREFECT_HOME": str(self.work / "prefect-home"),
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
                    "PREFECT_LOGGING_COLOR": "false", "NO_COLOR": "1"})
        if self.args.poll:
            env["PREFECT_RUNNER_POLL_FREQUENCY"] = str(self.args.poll)
        env.update(extra)
        return env

    def out(self, name: str, base: Path | None = None) -> Path:
        self.count += 1
        path = (base or self.work) / f"{self.count:02d}-{name}"
        shutil.rmtree(path, ignore_errors=True)
        return path

    def log(self, message: str) -> None:
        elapsed = time.perf_counter() - self.fig["start"]
        print(f"[{elapsed:6.0f} s, load {os.getloadavg()[0]:4.1f}] {message}", file=sys.stderr,
              flush=True)

    @contextlib.contextmanager
    def phase(self, name: str, *rows_if_failed: str) -> Iterator[None]:
        """A group of rows; a failure becomes rows that say what failed, the rest runs."""
        start = time.perf_counter()
        self.log(f"{name} …")
        try:
            yield
        except Exception as exc:  # the table says what could not be measured and why
            message = str(exc) if isinstance(exc, Failed) else (
                f"{type(exc).__name__}: {exc}".strip())
            self.log(f"{name} FAILED: {message}")
            if not isinstance(exc, Failed):
                traceback.print_exc(file=sys.stderr)
            for what in rows_if_failed or (name,):
                self.rows.append(Row(what, "not measured", "—", "**failed**",
                                     message.replace("|", "\\|").replace("\n", " ")[:900]))
        finally:
            self.phases.append((name, time.perf_counter() - start))

    def customers(self, n: int) -> Path:
        path = self.disk / f"customers-{n}.csv"
        if not path.exists():
            done = subprocess.run([PY, "-m", "cli", "sample-data", "--customers", str(n),
                                   "--seed", "7", "--out", str(path)], env=self.env(),
                                  cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode:
                raise Failed(f"`edition sample-data --customers {n}` failed: "
                             f"{done.stderr[-500:]}")
        return path

    def cli(self, n: int, name: str, *extra: str, code: Path = ROOT, base: Path | None = None,
            check: bool = True, env: dict[str, str] | None = None) -> tuple[Measured, Path]:
        """`edition run` of the campaign on n customers; raises Failed on a bad run."""
        out = self.out(name, base)
        module = "cli" if code == ROOT else "edition.cli"
        cmd = [PY, "-m", module, "run", CAMPAIGN, "--customers", str(self.customers(n)),
               "--out", str(out), "--as-of", AS_OF, *extra]
        measured = watch(cmd, env or self.env(code), code, self.work / f"log-{self.count:02d}")
        if measured.rc:
            raise Failed(measured.failure())
        if check:
            digest = check_folder(out, n)
            if code == ROOT:
                self.compare(n, digest, name, cmd)
        return measured, out

    def compare(self, n: int, digest: str, name: str, cmd: list[str]) -> None:
        """Every variant of the run must give the CLI's manifest for the same customers."""
        first = self.digests.setdefault(str(n), digest)
        if first != digest:
            self.notes.append(f"**Wrong output**: {name} on {n:,} customers wrote a manifest "
                              f"that differs from the CLI's (status/version/segments/modules) "
                              f"— `{' '.join(cmd)}`")

    # -- CLI, baseline, floor --------------------------------------------------------------

    def cli_rows(self) -> None:
        s = self.sizes
        small: dict[str, list[float]] = {"now": [], "base": []}
        big: dict[str, float] = {}
        have_base = (BASELINE / "edition" / "cli.py").is_file()
        if not have_base:
            self.notes.append(f"No baseline checkout at {BASELINE}: its rows are skipped.")
        with self.phase("CLI", "CLI, 1,000 customers, wall", "CLI, marginal rate"):
            for i in range(s.repeat):  # interleaved, so both see the same load
                measured, out = self.cli(s.small, f"cli-{s.small}")
                small["now"].append(measured.seconds)
                self.fig["cli_small_cpu"] = min(self.fig.get("cli_small_cpu", 1e9), measured.cpu)
                if i == 0:
                    self.fig["sample_folder"] = out  # the floor loop's versions
                    self.fig["cli_small_peak"] = measured.peak
                else:
                    shutil.rmtree(out, ignore_errors=True)
                if have_base:
                    measured, out = self.cli(s.small, f"base-{s.small}", code=BASELINE)
                    small["base"].append(measured.seconds)
                    shutil.rmtree(out, ignore_errors=True)
            measured, out = self.cli(s.big, f"cli-{s.big}")
            big["now"] = measured.seconds
            self.fig["cli_big_cpu"] = measured.cpu
            self.fig["cli_big_peak"] = measured.peak
            shutil.rmtree(out, ignore_errors=True)
            if have_base:
                measured, out = self.cli(s.big, f"base-{s.big}", code=BASELINE)
                big["base"] = measured.seconds
                shutil.rmtree(out, ignore_errors=True)
            t1 = min(small["now"])
            cli_rate = marginal((s.small, t1), (s.big, big["now"]))
            self.fig.update(cli_small=t1, cli_rate=cli_rate, cli_big=big["now"])
            fixed = t1 - s.small / cli_rate
            self.fig["cli_fixed"] = fixed
            base_txt, base_rate = "", None
            if have_base:
                b1 = min(small["base"])
                base_rate = marginal((s.small, b1), (s.big, big["base"]))
                self.fig.update(base_small=b1, base_rate=base_rate)
                base_txt = f"; the original code {b1:.2f} s ({t1 / b1:.2f}× that)"
            self.rows.append(Row(
                f"CLI, {s.small:,} customers, wall", f"{t1:.2f} s", "≤ 2 s",
                at_most(t1, 2.0) + base_txt,
                f"fixed start ≈ {fixed:.1f} s (wall − customers ÷ marginal rate: imports, "
                f"worker start-up, catalog, plan); the rest is {s.small:,} customers at the "
                f"marginal rate (≤ 2 batches render in the CLI's own process, no pool); best "
                f"of {len(small['now'])}"))
            self.rows.append(Row(
                f"CLI, marginal rate {s.small:,} → {s.big:,}", f"{cli_rate:,.0f} customers/s",
                "≥ 3,000/s", at_least(cli_rate, 3000),
                f"two worker processes on two shared cores ({s.big:,} customers in "
                f"{big['now']:.1f} s); distance to the floor: see the floor rows"))
            if base_rate is not None:
                self.rows.append(Row(
                    "baseline (original code, its own CLI and content), same two runs",
                    f"{min(small['base']):.2f} s wall; {base_rate:,.0f} customers/s marginal",
                    "—", f"this checkout's wall {t1 / min(small['base']):.2f}× the original's, "
                         f"its marginal rate {cli_rate / base_rate:.2f}× the original's",
                    f"`PYTHONPATH={BASELINE} python -m edition.cli run …`, interleaved with "
                    f"this checkout's runs"))

    def floor_rows(self) -> None:
        import floor

        s = self.sizes
        with self.phase("floor loop", "floor loop, 1 process", "floor loop, 2 processes",
                        "CLI ÷ floor"):
            sample = self.fig.get("sample_folder")
            if not sample:
                raise Failed("no CLI run folder to take the versions from (the CLI row failed)")
            versions = floor.load_versions(sample, self.customers(s.small))
            rows = floor.read_rows(self.customers(s.floor))
            rates: dict[int, float] = {}
            for _ in range(s.repeat):
                for processes in (1, 2):
                    out = self.out(f"floor-{processes}")
                    got = floor.measure(versions, rows, out, processes)
                    rates[processes] = max(rates.get(processes, 0.0), got)
                    shutil.rmtree(out, ignore_errors=True)
            out = self.out("floor-cpu")   # its CPU rate, in this process (load barely moves it)
            start = time.process_time()
            floor.loop(versions, rows, out)
            floor_cpu = len(rows) / (time.process_time() - start)
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(sample, ignore_errors=True)
            self.fig.update(floor1=rates[1], floor2=rates[2], floor_cpu=floor_cpu)
            self.rows.append(Row(
                "floor loop, 1 process (fill, base64 for the .eml, 3 files atomically)",
                f"{rates[1]:,.0f} customers/s", "~4,300/s (issue 13, unloaded)",
                f"{rates[1] / 4300:.2f}× the issue's figure",
                f"bench/floor.py, {len(rows):,} customers, {len(versions)} real versions; "
                f"~{1e6 / rates[1]:,.0f} µs per customer for three writes + base64; best of "
                f"{s.repeat}"))
            self.rows.append(Row(
                "floor loop, 2 processes", f"{rates[2]:,.0f} customers/s",
                "~8,000/s (issue 13)", f"{rates[2] / rates[1]:.2f}× one process",
                "two cores shared with whatever else runs (load average in the header)"))
            cli_rate = self.fig.get("cli_rate")
            if cli_rate:
                self.rows.append(Row(
                    "distance CLI ÷ floor (marginal rate vs the 2-process floor)",
                    f"{cli_rate / rates[2]:.0%} of the floor", "aim at the floor",
                    f"{1e6 / cli_rate:,.0f} µs of wall per customer vs the floor's "
                    f"{1e6 / rates[2]:,.0f} µs (both on two processes)",
                    "segments, selection, hole filling, headers, content hash, manifest "
                    "(profile: cProfile per customer)"))
                cpu = self.fig["cli_big_cpu"] - self.fig["cli_small_cpu"]
                if cpu > 0:   # issue 19's measure: CPU per customer, not wall
                    cli_cpu = (s.big - s.small) / cpu
                    self.rows.append(Row(
                        "distance CLI ÷ floor in CPU (marginal CPU per customer of the CLI's "
                        "process tree vs the floor loop's)",
                        f"{cli_cpu / floor_cpu:.0%} of the floor", "≥ 50 % (issue 19)",
                        at_least(cli_cpu / floor_cpu, 0.5),
                        f"{1e6 / cli_cpu:,.0f} µs of CPU per customer ({cli_cpu:,.0f} customers "
                        f"per CPU second, {s.small:,} → {s.big:,}) vs the floor's "
                        f"{1e6 / floor_cpu:,.0f} µs; the pipeline's own ~360 µs (bench/hotpath.py)"
                        " bounds it"))

    # -- memory --------------------------------------------------------------------------

    def memory_rows(self) -> None:
        s = self.sizes
        small_n, big_n = s.rss
        with self.phase("peak RSS", f"peak RSS, {big_n:,} customers"):
            peaks = {}
            for n in (small_n, big_n):
                measured, out = self.cli(n, f"rss-{n}")
                peaks[n] = (measured.peak, measured.seconds)
                shutil.rmtree(out, ignore_errors=True)
            (p1, _), (p2, t2) = peaks[small_n], peaks[big_n]
            self.fig.update(rss_small=p1, rss_big=p2)
            self.rows.append(Row(
                f"peak RSS, {big_n:,} customers, html+text+eml (process tree)",
                f"{p2 / MIB:,.0f} MiB (at {small_n:,}: {p1 / MIB:,.0f} MiB)",
                "flat", "**met**" if p2 <= 1.25 * p1 else
                f"**missed**: {p2 / p1:.2f}× the {small_n:,}-customer peak",
                f"{p2 / p1:.2f}× for {big_n // small_n}× the customers; {big_n:,} in "
                f"{t2:.0f} s ({big_n / t2:,.0f}/s wall); psutil every 50 ms"))
        with self.phase("peak RSS, high cardinality", f"peak RSS, {big_n:,} customers, "
                        "free-text interests"):
            # every customer's interests free text, and many locales: what the plan cached
            # per (segments, locale, interests) grew to 2,035 MiB at 100,000 customers
            hc = {}
            for n in (small_n, big_n):
                path = high_cardinality(self.customers(n), self.disk)
                out = self.out(f"rss-cardinality-{n}")
                cmd = [PY, "-m", "cli", "run", CAMPAIGN, "--customers", str(path), "--out",
                       str(out), "--as-of", AS_OF]
                measured = watch(cmd, self.env(), ROOT, self.work / f"log-{self.count:02d}")
                if measured.rc:
                    raise Failed(measured.failure())
                check_folder(out, n)
                versions = len(json.loads((out / "versions.json").read_text())["versions"])
                shutil.rmtree(out, ignore_errors=True)
                hc[n] = (measured.peak, measured.seconds, versions)
            (h1, _, v1), (h2, t2, v2) = hc[small_n], hc[big_n]
            self.rows.append(Row(
                f"peak RSS, {big_n:,} customers, free-text interests, {len(LOCALES)} locales",
                f"{h2 / MIB:,.0f} MiB (at {small_n:,}: {h1 / MIB:,.0f} MiB)", "flat",
                "**met**" if h2 <= 1.25 * h1 else
                f"**missed**: {h2 / h1:.2f}× the {small_n:,}-customer peak",
                f"{h2 / h1:.2f}× for {big_n // small_n}× the customers, each with interests "
                f"of their own; {v1:,} → {v2:,} versions (caches bounded per process); "
                f"{h2 / p2:.2f}× the sample file's peak; {big_n:,} in {t2:.0f} s"))
        if self.args.million:
            with self.phase("peak RSS, 1,000,000", "peak RSS, 1,000,000 customers"):
                n = 1_000_000
                measured, out = self.cli(n, "rss-1m", base=self.disk)
                shutil.rmtree(out, ignore_errors=True)
                p1 = self.fig.get("rss_small") or measured.peak
                self.rows.append(Row(
                    "peak RSS, 1,000,000 customers (`--million`, output on disk)",
                    f"{measured.peak / MIB:,.0f} MiB", "flat",
                    "**met**" if measured.peak <= 1.25 * p1 else
                    f"**missed**: {measured.peak / p1:.2f}× the {small_n:,}-customer peak",
                    f"{n:,} in {measured.seconds:.0f} s ({n / measured.seconds:,.0f}/s, "
                    f"disk-bound: ~27 GB written)"))

    # -- S3 ------------------------------------------------------------------------------

    def s3_rows(self) -> None:
        n = self.sizes.s3
        with self.phase("S3 run folder (moto)", f"S3 run folder (moto), {n:,} customers"):
            import boto3
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            try:
                host, port = server.get_host_and_port()
                url = f"http://{host}:{port}"
                creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                         "AWS_DEFAULT_REGION": "us-east-1"}
                s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                                  aws_access_key_id="bench", aws_secret_access_key="bench")
                s3.create_bucket(Bucket="bench")
                local, _ = self.cli(n, f"local-{n}")
                env = self.env(AWS_ENDPOINT_URL=url, **creds)
                cmd = [PY, "-m", "cli", "run", CAMPAIGN, "--customers",
                       str(self.customers(n)), "--out", "s3://bench/run", "--as-of", AS_OF]
                remote = watch(cmd, env, ROOT, self.work / "log-s3")
                if remote.rc:
                    raise Failed(remote.failure())
                keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket="bench", Prefix="run/") for o in page.get("Contents", [])]
                body = s3.get_object(Bucket="bench", Key="run/manifest.jsonl")["Body"].read()
                lines = body.decode().splitlines()
                self.compare(n, manifest_digest(lines), "--out s3://", cmd)
                files = sum(k.rsplit(".", 1)[-1] in {"html", "txt", "eml"} for k in keys)
                if files != 3 * n or len(lines) != n:
                    raise Failed(f"s3://bench/run holds {files} edition files and "
                                 f"{len(lines)} manifest rows for {n} customers")
            finally:
                server.stop()
            puts = len(keys) + 1  # and the lock object, put and deleted
            extra = remote.seconds - local.seconds
            self.fig.update(s3_wall=remote.seconds, s3_local=local.seconds,
                            s3_puts=puts / remote.seconds)
            self.rows.append(Row(
                f"run folder in S3 (moto server), {n:,} customers",
                f"{remote.seconds:.1f} s (local folder: {local.seconds:.1f} s)", "—",
                f"{local.seconds / remote.seconds:.2f}× the local folder's rate",
                f"{puts:,} PUTs, {self.fig['s3_puts']:,.0f} PUT/s over the whole run: moto "
                f"(one Python process, {extra / n * 1000:.1f} ms more per customer) bounds "
                f"it, not the engine; manifest equal to the local run's"))

    # -- ledger --------------------------------------------------------------------------

    def ledger_rows(self) -> None:
        s = self.sizes
        WINDOW = 256  # claims per commit on the batched path
        with self.phase("send ledger", "send ledger, PostgreSQL vs SQLite"):
            import ledger as ledger_bench

            server = ledger_bench.TemporaryPostgres(fsync=True).start()
            try:
                postgres = server.create_database("bench")
                results: dict[tuple[str, int], tuple[float, float, float]] = {}
                for workers in s.ledger_workers:
                    for name, location in (("SQLite", str(self.disk / f"ledger-{workers}.db")),
                                           ("PostgreSQL", postgres)):
                        results[name, workers] = ledger_bench.measure(
                            location, workers, s.ledger_seconds, True, f"r{name}{workers}")
                        # the batched path (claim_many, docs/scale.md), interleaved
                        results[f"{name} windowed", workers] = ledger_bench.measure(
                            location, workers, s.ledger_seconds, True,
                            f"w{name}{workers}", WINDOW)
            finally:
                server.stop()
            for workers in s.ledger_workers:
                sq, pg = results["SQLite", workers], results["PostgreSQL", workers]
                self.rows.append(Row(
                    f"send ledger, claim + record, {workers} worker process(es)",
                    f"PostgreSQL {pg[0]:,.0f} claims/s; SQLite {sq[0]:,.0f} claims/s",
                    "—", f"PostgreSQL {pg[0] / sq[0]:.2f}× SQLite",
                    f"one durable commit per claim (fsync on the same disk): claim p50 "
                    f"PostgreSQL {pg[1]:.2f} ms, SQLite {sq[1]:.2f} ms; p99 {pg[2]:.1f} / "
                    f"{sq[2]:.1f} ms; {s.ledger_seconds:g} s each"))
                wsq = results["SQLite windowed", workers]
                wpg = results["PostgreSQL windowed", workers]
                self.rows.append(Row(
                    f"send ledger, claim_many ({WINDOW} in flight) + record_many, {workers} "
                    "worker process(es)",
                    f"PostgreSQL {wpg[0]:,.0f} claims+records/s; SQLite {wsq[0]:,.0f}",
                    "≥ 10,000/s on PostgreSQL (issue 22)",
                    f"PostgreSQL {wpg[0] / pg[0]:.1f}×, SQLite {wsq[0] / sq[0]:.1f}× one "
                    "claim per commit (same run)",
                    f"one durable commit per window of {WINDOW} claims + the previous "
                    f"window's records; commit p50 PostgreSQL {wpg[1]:.1f} ms, SQLite "
                    f"{wsq[1]:.1f} ms; a crash leaves at most {WINDOW} unknown per worker"))
            top = max(s.ledger_workers)
            self.fig.update(pg_windowed=results["PostgreSQL windowed", top][0],
                            pg_claims=results["PostgreSQL", top][0],
                            sqlite_claims=results["SQLite", top][0], ledger_workers=top)

    # -- PDF -----------------------------------------------------------------------------

    def pdf_rows(self) -> None:
        customers, versions, naive_n = self.sizes.pdf
        with self.phase("PDF", f"PDF, {customers:,} customers"):
            from concurrent.futures import ProcessPoolExecutor

            import pdf

            from renderers.pdf import PdfStats

            workers = os.cpu_count() or 2
            options = {"page_size": "A4", "templates_dir": str(ROOT / "templates")}
            jobs = pdf.campaign(customers, versions, unique_names=True)
            htmls = list(pdf.sample(jobs, naive_n))
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(pdf._naive_one, [pdf.WARM_UP] * workers, [options] * workers))
                naive = pdf.measure("naive", lambda: pdf.naive_loop(pool, htmls, options),
                                    naive_n)
            stats = PdfStats()
            fast = pdf.measure("edition", lambda: pdf.edition(jobs, workers, options, stats),
                               customers)
            if fast.pages < customers:
                raise Failed(f"the edition's PDFs hold {fast.pages} pages for {customers} "
                             f"customers")
            self.rows.append(Row(
                f"PDF, {customers:,} customers, {versions} versions, every customer's text "
                f"different", f"{fast.rate:,.1f} PDFs/s (naive WeasyPrint loop "
                              f"{naive.rate:,.1f}/s)", "≥ 10× the naive loop",
                at_least(fast.rate / naive.rate, 10) + f" ({fast.rate / naive.rate:.1f}×)",
                f"CPU per customer {fast.cpu_per * 1000:.0f} ms vs naive "
                f"{naive.cpu_per * 1000:.0f} ms ({naive.cpu_per / fast.cpu_per:.1f}×); "
                f"{stats.summary()}; naive rate from {naive_n} customers"))

    # -- Prefect -------------------------------------------------------------------------

    def prefect_rows(self) -> None:
        import served

        s = self.sizes
        stack_rows = [f"served deployment, {s.served:,} customers"] + [
            f"flow, {r} runner, marginal rate" for r in s.runners]
        with self.phase("Prefect server + edition serve", *stack_rows):
            env = self.env()
            with served.Stack(ROOT, self.work / "served", env,
                              Path(CAMPAIGN).stem) as stack:
                self.log(f"prefect server up in {stack.server_start:.1f} s, edition serve's "
                         f"deployment in {stack.serve_start:.1f} s")
                self.served_rows(stack)
                self.runner_rows(stack)
        with self.phase("--via-prefect, ephemeral server",
                        f"--via-prefect, {s.small:,} customers, wall"):
            # after the stack: the ephemeral server uses the same (migrated) PREFECT_HOME
            measured, out = self.cli(s.small, "flow-ephemeral", "--via-prefect")
            shutil.rmtree(out, ignore_errors=True)
            cli1 = self.fig.get("cli_small")
            wall = measured.seconds
            target = (cli1 or 0) + 15
            server1 = self.fig.get("flow_small_thread")
            split = ""
            if server1 and cli1:
                split = (f"Prefect's ephemeral server start ≈ {wall - server1:.1f} s (this "
                         f"wall − the same run against a running server); the flow's own "
                         f"cost ≈ {server1 - cli1:.1f} s (that run − the CLI's wall)")
            self.rows.append(Row(
                f"`--via-prefect`, {s.small:,} customers, wall (ephemeral server)",
                f"{wall:.1f} s", f"≤ CLI + 15 s = {target:.1f} s" if cli1 else "≤ CLI + 15 s",
                at_most(wall, target) if cli1 else "CLI wall missing", split or "—"))

    def served_rows(self, stack: Any) -> None:
        s = self.sizes
        n = s.served
        data = stack.site / "data" / f"customers-{n}.csv"
        shutil.copy(self.customers(n), data)
        walls, parts = [], []
        for i in range(s.served_runs):
            out = f"out/served-{i}"
            got = stack.request({"customers": f"data/{data.name}", "as_of": AS_OF,
                                 "advanced": {"out": out}})
            if got["state"] != "COMPLETED":
                raise Failed(f"the served flow run {got['id']} ended {got['state']} "
                             f"(logs: {stack.home}/serve.log)")
            digest = check_folder(stack.site / out, n)
            self.compare(n, digest, "the served deployment", ["run_deployment", out])
            shutil.rmtree(stack.site / out, ignore_errors=True)
            walls.append(got["wall"])
            parts.append((got["to_running"] or 0.0, got["running"] or 0.0))
        cli, out = self.cli(n, f"cli-{n}")
        shutil.rmtree(out, ignore_errors=True)
        wall = sum(walls) / len(walls)
        wait = sum(p[0] for p in parts) / len(parts)
        running = sum(p[1] for p in parts) / len(parts)
        from flows.serve import POLL_SECONDS

        poll = self.args.poll or f"{POLL_SECONDS} (edition serve's default)"
        self.rows.append(Row(
            f"served deployment (`prefect server` + `edition serve`), {n:,} customers, "
            f"request → Completed",
            f"{wall:.1f} s ({', '.join(f'{w:.1f}' for w in walls)}); CLI {cli.seconds:.1f} s",
            "≤ 2× the CLI's wall", at_most(wall / cli.seconds, 2.0, "×"),
            f"{wall / cli.seconds:.1f}× the CLI: request → Running {wait:.1f} s (serve polls "
            f"for scheduled runs every {poll} s, then starts a flow-run process), Running → "
            f"Completed {running:.1f} s; no server start (the server was up "
            f"{stack.server_start:.0f} s earlier)"))

    def runner_rows(self, stack: Any) -> None:
        """Marginal rate of each task runner, against the running server."""
        s = self.sizes
        env = self.env(PREFECT_API_URL=stack.api)
        cli_rate = self.fig.get("cli_rate")
        for runner in s.runners:
            kind, _, workers = runner.partition(":")
            extra = ["--via-prefect", "--task-runner", kind]
            if workers:
                extra += ["--workers", workers]
            label = f"dask, {workers} worker{'s' if workers != '1' else ''}" if workers \
                else f"{kind}{' (default)' if kind == 'thread' else ''}"
            try:
                small, out = self.cli(s.small, f"flow-{kind}{workers}-{s.small}", *extra, env=env)
                shutil.rmtree(out, ignore_errors=True)
                big, out = self.cli(s.flow_big, f"flow-{kind}{workers}-{s.flow_big}", *extra,
                                    env=env)
                shutil.rmtree(out, ignore_errors=True)
            except Failed as exc:
                self.rows.append(Row(f"flow, {label} runner", "not measured", "—",
                                     "**failed**", str(exc).replace("|", "\\|")))
                continue
            flow_rate = marginal((s.small, small.seconds), (s.flow_big, big.seconds))
            self.fig[f"flow_small_{runner}"] = small.seconds
            self.fig[f"flow_rate_{runner}"] = flow_rate
            target = "≥ 0.8× the CLI" if kind == "thread" else "—"
            if cli_rate:
                ratio = flow_rate / cli_rate
                verdict = (at_least(ratio, 0.8) + "; " if kind == "thread" else "") + \
                    f"{ratio:.2f}× the CLI's {cli_rate:,.0f}/s"
            else:
                verdict = "no CLI rate in this run"
            self.rows.append(Row(
                f"flow marginal rate, {label} runner ({s.small:,} → {s.flow_big:,})",
                f"{flow_rate:,.0f} customers/s", target, verdict,
                f"walls {small.seconds:.1f} s / {big.seconds:.1f} s against a running "
                f"server (fixed ≈ {small.seconds - s.small / flow_rate:.1f} s); peak RSS "
                f"{big.peak / MIB:,.0f} MiB"))

    # -- on paper ------------------------------------------------------------------------

    def scaling_paragraph(self) -> str:
        f = self.fig
        one, two = f.get("flow_rate_dask:1"), f.get("flow_rate_dask:2")
        if not two:
            return ("10 million customers: not computed (the Dask rows were not measured "
                    "in this run).")
        one = one or two / 2
        per_machine = two  # two workers on a two-core machine, measured
        total = 10_000_000
        lines = [f"**10 million customers, on paper, from this run's figures.** One Dask "
                 f"worker renders {one:,.0f} customers/s here and two workers on this "
                 f"2-core machine {two:,.0f}/s ({two / one:.2f}× one). With N such machines "
                 f"(2 workers each) and the flow's scheduler on its own, rendering alone "
                 f"takes 10,000,000 ÷ (N × {per_machine:,.0f}/s):"]
        lines.append(" " + "; ".join(
            f"N = {n}: {total / (n * per_machine) / 60:,.0f} min" for n in (1, 4, 16, 64)) + ".")
        pg, sq = f.get("pg_claims"), f.get("sqlite_claims")
        if pg:
            sat = pg / per_machine
            lines.append(
                f" A send also claims each customer in the ledger: PostgreSQL took "
                f"{pg:,.0f} claims/s from {f.get('ledger_workers')} worker process(es) here "
                f"(SQLite {sq:,.0f}/s, one machine only), so a send of 10 million needs at "
                f"least {total / pg / 60:,.0f} min of ledger time at that rate and the "
                f"ledger, not rendering, is the limit beyond ~{max(sat, 0.1):,.1f} machine(s) "
                f"unless its claims/s grows with connections on a dedicated server (one "
                f"fsync per claim; group commit helps). Dry runs never touch the ledger.")
        windowed = f.get("pg_windowed")
        if pg and windowed:
            lines.append(
                f" With windows of claims (`deliver_many`, docs/scale.md) PostgreSQL took "
                f"{windowed:,.0f} claims+records/s from the same workers: 10 million in "
                f"{total / windowed / 60:,.0f} min of ledger time, the ledger no longer the "
                f"limit below ~{windowed / per_machine:,.1f} machine(s).")
        puts = f.get("s3_puts")
        if puts:
            need = 3 * per_machine
            lines.append(
                f" Each customer is three objects in S3: N machines put {need:,.0f} × N "
                f"objects/s. moto took ~{puts:,.0f} PUT/s here (a single Python process: "
                f"it measures the client path, not S3); AWS documents at least 3,500 PUTs/s "
                f"per partitioned prefix, i.e. ~1,170 customers/s for one run prefix, "
                f"reached at N ≈ {3500 / need:,.1f} — beyond that S3 throttles (503 Slow "
                f"Down, retried by the client) until it partitions the prefix.")
        return "".join(lines)

    # -- output --------------------------------------------------------------------------

    def table(self) -> str:
        out = ["| what | measured | target | ratio / verdict | what bounds it |",
               "| --- | ---: | ---: | --- | --- |"]
        for r in self.rows:
            out.append(f"| {r.what} | {r.measured} | {r.target} | {r.verdict} | {r.bounds} |")
        return "\n".join(out)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every row, small sizes (<2 min "
                                                             "on an idle machine)")
    parser.add_argument("--million", action="store_true",
                        help="also peak RSS at 1,000,000 customers (output on disk, ~27 GB)")
    parser.add_argument("--only", default="",
                        help="comma list of row groups: cli,floor,memory,s3,ledger,pdf,prefect")
    parser.add_argument("--poll", type=float, default=0,
                        help="PREFECT_RUNNER_POLL_FREQUENCY for edition serve (default: "
                             "Prefect's own, what a user gets)")
    parser.add_argument("--runners", help="flow task runners, e.g. thread,process,dask:1,"
                                           "dask:2 (default: all of those; --quick: thread)")
    parser.add_argument("--memory", default="/dev/shm", help="a tmpfs for the run folders")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="where to write the Markdown (default bench/results.md)")
    parser.add_argument("--no-results", action="store_true", help="print only")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    if args.runners:
        sizes.runners = tuple(r for r in args.runners.split(",") if r)
    groups = [g for g in args.only.split(",") if g] or [
        "cli", "floor", "memory", "s3", "ledger", "pdf", "prefect"]
    memory = Path(args.memory)
    started = dt.datetime.now(dt.UTC)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="edition-bench-") as disk_tmp, \
            tempfile.TemporaryDirectory(prefix="edition-bench-",
                                        dir=memory if memory.is_dir() else None) as work_tmp:
        bench = Bench(args, sizes, Path(work_tmp), Path(disk_tmp))
        bench.fig["start"] = time.perf_counter()
        steps: dict[str, Callable[[], None]] = {
            "cli": bench.cli_rows, "floor": bench.floor_rows, "memory": bench.memory_rows,
            "s3": bench.s3_rows, "ledger": bench.ledger_rows, "pdf": bench.pdf_rows,
            "prefect": bench.prefect_rows}
        if "floor" in groups and "cli" not in groups:
            groups.insert(0, "cli")  # the floor takes its versions from a CLI run
        for name in steps:
            if name in groups:
                steps[name]()
        seconds = time.perf_counter() - bench.fig["start"]
        where = "tmpfs (/dev/shm)" if memory.is_dir() else "disk"
        header = (
            f"## Benchmark: {started:%Y-%m-%d %H:%M} UTC, `bench/run.py"
            f"{' --quick' if args.quick else ''}{' --million' if args.million else ''}`\n\n"
            f"{os.cpu_count()} cores ({cpu_model()}), {psutil.virtual_memory().total / 2**30:.0f}"
            f" GiB, shared: load average {load[0]:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end. Sample weekly newsletter, html + text + "
            f"eml, customers from `edition sample-data --seed 7`, run folders on {where}. "
            f"The bench took {seconds / 60:.1f} min "
            f"({', '.join(f'{n} {t:.0f} s' for n, t in bench.phases)}).\n")
        text = "\n".join([header, bench.table(), "", bench.scaling_paragraph(), ""])
        if bench.notes:
            text += "\n" + "\n".join(f"- {n}" for n in bench.notes) + "\n"
        print("\n" + text)
        if not args.no_results:
            args.results.write_text(text, encoding="utf-8")
            print(f"(written to {args.results})", file=sys.stderr)


if __name__ == "__main__":
    main()
