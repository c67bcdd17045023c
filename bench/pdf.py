"""Benchmark: PDF editions, the naive loop against the edition fast path, side by side.

    .venv/bin/python bench/pdf.py            # 4,010 customers, 45 versions (about a minute)
    .venv/bin/python bench/pdf.py --quick    # 1,000 customers, 12 versions
    .venv/bin/python bench/pdf.py --profile  # where one worker's CPU goes, top entries

One run measures three rows on the same process pool: the naive loop (one whole
WeasyPrint document per customer, on a sample whose rate is extrapolated), the fast
path with the campaign's names shared among customers (stamps reused), and the fast
path with every customer's name different (a stamp per customer). The generated
newsletters are about four A4 pages. Wall-clock rates depend on what else runs on the
machine; the CPU columns (this process and its workers) much less.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import re
import resource
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from markupsafe import escape
from pypdf import PdfReader

from renderers.pdf import PdfBatchRenderer, PdfStats, render_pdf, render_versions

FIRST_NAMES = [
    "Maria", "Jonas", "Aiko", "Bartholomew", "Zoë", "Ingrid", "Tobiah", "Leilani",
    "Kwabena", "Priya", "Harold", "Dorothy", "Amelia", "Nerea", "Julia", "Guadalupe",
    "Luis", "Jennifer", "Ethan", "Valeria", "John", "Freya", "Ana", "Inés", "Mohammed",
    "Siobhan", "Yusuf", "Chiara", "Björn", "Fatima", "Oluwaseun", "Anastasia", "Li", "Wei",
    "Kai", "Rosalind", "Esperanza", "Tomás", "Hannah", "Magnus", "Aroha",
]
WORDS = [
    "the", "a", "of", "and", "to", "in", "our", "your", "this", "week", "we", "new",
    "local", "garden", "market", "season", "harvest", "bridge", "river", "library",
    "evening", "morning", "coffee", "bread", "orchard", "neighbour", "festival", "music",
    "repair", "bicycle", "path", "school", "recipe", "kitchen", "family", "travel",
    "quiet", "light", "warm", "field", "walk", "volunteer", "community", "apple", "spring",
    "summer", "autumn", "winter", "plan", "save", "offer", "member", "service", "energy",
    "home", "better", "simple", "careful", "small", "large", "early", "late", "open",
    "closed", "together",
]


def sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def paragraph(rng: random.Random) -> str:
    return " ".join(sentence(rng, rng.randint(9, 18)) for _ in range(rng.randint(4, 6)))


@dataclass
class Newsletter:
    """Stand-in for the engine's SharedDocument: a version's parts and hole fields."""

    parts: list[str]
    holes: list[str]

    def fill(self, customer: dict[str, Any]) -> str:
        out = [self.parts[0]]
        for field, part in zip(self.holes, self.parts[1:], strict=True):
            out += (str(escape(customer[field])), part)
        return "".join(out)


def newsletter(version: int) -> Newsletter:
    """One version: masthead, greeting, four articles, an offer box, the footer."""
    rng = random.Random(version)
    articles = "".join(
        f"<article><h2>{sentence(rng, rng.randint(3, 6))[:-1]}</h2>"
        + "".join(f"<p>{paragraph(rng)}</p>" for _ in range(rng.randint(3, 4)))
        + "</article>"
        for _ in range(4)
    )
    head = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<title>Acme Weekly</title><style>"
        "body{margin:0;background:#f3f1ec;font-family:Helvetica,Arial,sans-serif;font-size:16px}"
        ".page{max-width:640px;margin:16px auto;background:#fff}"
        ".masthead{background:#1f3a5f;color:#fff;padding:28px 32px}"
        ".masthead h1{margin:6px 0;font-family:Georgia,serif;font-weight:normal}"
        ".content{padding:4px 32px}.greeting{font-size:18px}"
        "h2{font-family:Georgia,serif;font-weight:normal;color:#1f3a5f}"
        ".offer{margin:26px 0;padding:20px 24px;background:#fff4e0;border:2px solid #f2b880}"
        ".footer{background:#ece8df;padding:24px 32px;font-size:14px}"
        "</style></head>"
    )
    parts = [
        head + "<body><div class=page><div class=masthead role=banner><p>ACME</p>"
        "<h1>Acme Weekly</h1><p class=dateline>Week of 4 May 2026</p></div>"
        "<div class=content role=main><div class=greeting><p>Dear ",
        f",</p><p>{paragraph(rng)}</p></div>{articles}"
        "<div class=offer><p class=offer-label>Just for you</p>"
        f"<h2>{sentence(rng, 4)[:-1]}</h2><p>{paragraph(rng)}</p></div></div>"
        "<div class=footer role=contentinfo><h2>Tell us what you think</h2>"
        "<p>This edition was put together for you. A real editor reads every reply.</p>"
        "<p>Acme Ltd, 1 Main Street, Springfield · Phone +1 555 0100 · "
        '<a href="https://acme.example/feedback?c=',
        '">https://acme.example/feedback</a></p></div></div></body></html>',
    ]
    return Newsletter(parts, ["first_name", "id"])


def campaign(
    customers: int, versions: int, *, unique_names: bool = False
) -> list[tuple[Newsletter, list[dict[str, Any]]]]:
    """The customers spread evenly over the versions."""
    rng = random.Random(0)
    jobs: list[tuple[Newsletter, list[dict[str, Any]]]] = [
        (newsletter(v), []) for v in range(versions)
    ]
    for i in range(customers):
        name = rng.choice(FIRST_NAMES)
        if unique_names:  # no two customers share a greeting: no stamp is reused
            name = f"{name} {chr(65 + i % 26)}{i:05d}"
        customer = {"id": f"C{i:06d}", "first_name": name}
        jobs[i % versions][1].append(customer)
    return jobs


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def pages_of(pdf: bytes) -> int:
    # The fast path writes page dictionaries in the clear; WeasyPrint compresses them.
    return len(_PAGE.findall(pdf)) or len(PdfReader(io.BytesIO(pdf)).pages)


def sample(jobs: list[tuple[Newsletter, list[dict[str, Any]]]], n: int) -> Iterator[str]:
    """n customers' HTML, taken across all versions."""
    taken = 0
    for round_ in range(max(len(c) for _, c in jobs)):
        for doc, customers in jobs:
            if round_ < len(customers) and taken < n:
                taken += 1
                yield doc.fill(customers[round_])


@dataclass
class Row:
    """One measured way of rendering the campaign."""

    name: str
    customers: int
    seconds: float
    cpu: float
    pages: int
    size: int

    @property
    def rate(self) -> float:
        return self.customers / self.seconds

    @property
    def cpu_per(self) -> float:
        return self.cpu / self.customers


def measure(
    name: str, work: Callable[[], Iterator[tuple[bytes, float]]], customers: int
) -> Row:
    """Time ``work`` and count what it wrote. Each item is a PDF and the CPU seconds its
    worker reported for it, or -1 when only the pool's whole lifetime is known."""
    start, cpu = time.perf_counter(), cpu_seconds()
    own = resource.getrusage(resource.RUSAGE_SELF)
    size = pages = 0
    kept, reported = [], 0.0
    for pdf, task_cpu in work():
        size += len(pdf)
        if task_cpu >= 0:
            kept.append(pdf)
            reported += task_cpu
        else:  # the fast path writes page dictionaries in the clear: cheap to count
            pages += pages_of(pdf)
    seconds = time.perf_counter() - start
    if reported:  # this process plus the tasks, not the pool's start
        after = resource.getrusage(resource.RUSAGE_SELF)
        spent = reported + sum(
            getattr(after, f) - getattr(own, f) for f in ("ru_utime", "ru_stime")
        )
    else:
        spent = cpu_seconds() - cpu
    # After the clock: WeasyPrint's own files need a PDF parser to count their pages.
    pages += sum(map(pages_of, kept))
    return Row(name, customers, seconds, spent, pages, size)


def naive_loop(
    pool: ProcessPoolExecutor, htmls: list[str], options: dict[str, Any]
) -> Iterator[tuple[bytes, float]]:
    """One whole WeasyPrint document per customer, on as many processes as the edition."""
    yield from pool.map(_naive_one, htmls, [options] * len(htmls))


WARM_UP = "<p>warm up</p>"


def _naive_one(html: str, options: dict[str, Any]) -> tuple[bytes, float]:
    start = time.process_time()
    pdf = render_pdf(html, base_url=None, **options)
    return pdf, time.process_time() - start


def edition(
    jobs: list[tuple[Newsletter, list[dict[str, Any]]]],
    workers: int,
    options: dict[str, Any],
    stats: PdfStats,
) -> Iterator[tuple[bytes, float]]:
    for pdfs in render_versions(jobs, workers=workers, stats=stats, **options):
        for pdf in pdfs:
            yield pdf, -1.0


def profile(args: argparse.Namespace, options: dict[str, Any], top: int = 18) -> None:
    """One renderer in this process, every name different: the top of its profile."""
    jobs = campaign(args.customers, args.versions, unique_names=True)[:3]
    renderer = PdfBatchRenderer(**options)
    profiler = cProfile.Profile()
    start = time.process_time()
    profiler.enable()
    for doc, customers in jobs:
        renderer.render(doc, customers)
    profiler.disable()
    customers = sum(len(c) for _, c in jobs)
    print(f"{customers} customers in {len(jobs)} versions, one process: "
          f"{(time.process_time() - start) / customers * 1000:.1f} ms CPU per customer "
          f"(under the profiler)")
    print(renderer.stats.summary())
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, help="default 4010 (--quick: 1000)")
    parser.add_argument("--versions", type=int, help="default 45 (--quick: 12)")
    parser.add_argument("--naive", type=int, help="naive sample, default 40 (--quick: 16)")
    parser.add_argument("--quick", action="store_true", help="a smaller campaign")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--templates", default="templates", help="folder with print.css")
    parser.add_argument("--page-size", default="A4", choices=["A4", "Letter"])
    parser.add_argument("--profile", action="store_true",
                        help="profile one in-process renderer instead of the table")
    args = parser.parse_args()
    args.customers = args.customers or (1000 if args.quick else 4010)
    args.versions = args.versions or (12 if args.quick else 45)
    args.naive = args.naive or (16 if args.quick else 40)
    options = {"page_size": args.page_size, "templates_dir": args.templates}
    if args.profile:
        profile(args, options)
        return

    shared_jobs = campaign(args.customers, args.versions)
    unique_jobs = campaign(args.customers, args.versions, unique_names=True)
    load_before = os.getloadavg()[0]
    htmls = list(sample(unique_jobs, args.naive))
    with ProcessPoolExecutor(args.workers) as pool:
        # Started and warm before the clock: the loop's rate is extrapolated to the
        # whole campaign, where starting the pool is a rounding error.
        list(pool.map(_naive_one, [WARM_UP] * args.workers, [options] * args.workers))
        naive = measure(
            "naive loop (one WeasyPrint document each)",
            lambda: naive_loop(pool, htmls, options),
            args.naive,
        )
    shared_stats, unique_stats = PdfStats(), PdfStats()
    shared = measure(
        "edition, names shared",
        lambda: edition(shared_jobs, args.workers, options, shared_stats),
        args.customers,
    )
    unique = measure(
        "edition, every name different",
        lambda: edition(unique_jobs, args.workers, options, unique_stats),
        args.customers,
    )

    print(f"{args.customers} customers in {args.versions} versions, {args.workers} workers, "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'':42} {'customers':>9} {'seconds':>7} {'cust/s':>7} {'ratio':>6}"
          f" {'CPU ms/cust':>11} {'CPU ratio':>9} {'pages/s':>7} {'KiB/PDF':>7}")
    for row in (naive, shared, unique):
        print(f"{row.name:42} {row.customers:>9} {row.seconds:>7.1f} {row.rate:>7.1f}"
              f" {row.rate / naive.rate:>5.1f}x {row.cpu_per * 1000:>11.1f}"
              f" {naive.cpu_per / row.cpu_per:>8.1f}x {row.pages / row.seconds:>7.1f}"
              f" {row.size / row.customers / 1024:>7.1f}")
    print(f"naive loop at {args.customers} customers, extrapolated: "
          f"{args.customers / naive.rate:.0f} s")
    print(f"names shared: {shared_stats.summary()}; {shared_stats.versions} version layouts")
    print(f"every name different: {unique_stats.summary()}")


if __name__ == "__main__":
    main()
