"""Benchmark: the outside template corpus beside the sample newsletter, in one run.

    .venv/bin/python bench/corpus.py                   # 3,000 customers, PDF for 60
    .venv/bin/python bench/corpus.py --customers 1000 --pdf-customers 20

For each campaign (the sample weekly newsletter, then every layout of
tests/corpus/templates) the real CLI renders html+text+eml for a small and a large
customer file, interleaved, and the marginal rate (customers/s between the two sizes,
start-up left out) is set beside the sample's: issue 19 asks for at least 0.8x. The
shares come from each run's run.json: customers on the shared html path (target
>= 95 %), versions rendered once. Then PDF: the CLI's rate (the fast path where it
can) against a naive loop (one whole WeasyPrint document per customer over the same
customers' pages, in this process), with the share on the fast path and the top
reason for the others (targets: >= 90 % fast, >= 20x the naive loop).
Rates are wall clock on a shared machine; the ratios, measured side by side, are what
to read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fixtures_corpus import NAMES, corpus_site, write_corpus_customers  # noqa: E402

from edition.audience.sampledata import write_customers  # noqa: E402

AS_OF = "2026-11-02"


def cli_run(site: Path, campaign: str, customers: Path, out: Path, formats: str,
            limit: int | None = None) -> tuple[float, dict[str, Any]]:
    cmd = [sys.executable, "-m", "cli", "run", str(site / "campaigns" / f"{campaign}.yaml"),
           "--customers", str(customers), "--formats", formats, "--as-of", AS_OF,
           "--out", str(out), "--overwrite"]
    if limit:
        cmd += ["--limit", str(limit)]
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", NO_COLOR="1")
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=site, env=env, capture_output=True, text=True,
                          check=False, timeout=3600)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{campaign}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    return wall, json.loads((out / "run.json").read_text(encoding="utf-8"))["rendering"]


def share(info: dict[str, Any] | None, good: str) -> str:
    if not info:
        return "—"
    top = info["reasons"][0]["reason"] if info["reasons"] else ""
    text = f"{info[good]:,}/{info['customers']:,} ({100 * info[good] / info['customers']:.1f}%)"
    return text + (f"; top other: {top[:70]}" if top else "")


def naive_pdf_rate(site: Path, campaign: str, html_out: Path, n: int) -> float:
    """A naive loop: one whole WeasyPrint render per customer's inlined page."""
    from edition.content.campaign import load_campaign
    from edition.render.encoding import pdf_options
    from renderers.pdf import render_pdf

    options = pdf_options(load_campaign(site / "campaigns" / f"{campaign}.yaml"))
    pages = sorted((html_out / "html").glob("*.html"))[:n]
    render_pdf(pages[0].read_text(encoding="utf-8"), base_url=options["base_url"],
               root=options["root"])  # fonts loaded once, as the renderer does
    start = time.perf_counter()
    for page in pages:
        render_pdf(page.read_text(encoding="utf-8"), base_url=options["base_url"],
                   root=options["root"])
    return len(pages) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--pdf-customers", type=int, default=60)
    parser.add_argument("--naive", type=int, default=10, help="customers in the naive loop")
    args = parser.parse_args()
    small = max(args.customers // 6, 100)
    with tempfile.TemporaryDirectory(prefix="edition-bench-corpus-") as tmp:
        site = corpus_site(Path(tmp) / "site")
        corpus_file = write_corpus_customers(Path(tmp) / "corpus.jsonl", args.customers)
        sample_file = Path(tmp) / "sample.csv"
        write_customers(sample_file, args.customers, seed=7)
        campaigns = [("weekly-newsletter", sample_file)] + [(n, corpus_file) for n in NAMES]
        print(f"## html+text+eml, {small:,} and {args.customers:,} customers "
              f"(load average {os.getloadavg()[0]:.1f})\n")
        print("| campaign | wall small / large | marginal rate | × sample | shared html path"
              " | versions rendered once |")
        print("| --- | ---: | ---: | ---: | --- | --- |")
        base_rate = None
        for name, customers in campaigns:
            walls = []
            for n in (small, args.customers):
                wall, rendering = cli_run(site, name, customers, Path(tmp) / f"out-{name}",
                                          "html,text,eml", limit=n)
                walls.append(wall)
            rate = (args.customers - small) / max(walls[1] - walls[0], 1e-9)
            base_rate = base_rate or rate
            versions = rendering.get("versions", {})
            print(f"| {name} | {walls[0]:.1f} s / {walls[1]:.1f} s | {rate:,.0f}/s | "
                  f"{rate / base_rate:.2f} | {share(rendering.get('html'), 'shared')} | "
                  f"{versions.get('shared', 0):,}/{versions.get('total', 0):,} |", flush=True)
        print(f"\n## PDF, {args.pdf_customers:,} customers (naive loop: {args.naive})\n")
        print("| campaign | CLI PDF rate | naive loop | × naive | fast path |")
        print("| --- | ---: | ---: | ---: | --- |")
        for name in NAMES:
            out = Path(tmp) / f"pdf-{name}"
            wall, rendering = cli_run(site, name, corpus_file, out, "html,pdf",
                                      limit=args.pdf_customers)
            naive = naive_pdf_rate(site, name, out, args.naive)
            rate = args.pdf_customers / wall
            print(f"| {name} | {rate:.2f}/s (wall {wall:.1f} s) | {naive:.2f}/s | "
                  f"{rate / naive:.2f} | {share(rendering.get('pdf'), 'fast')} |", flush=True)


if __name__ == "__main__":
    main()
