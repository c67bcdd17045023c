"""Benchmark: PDF editions, naive loop against the edition fast path.

    .venv/bin/python bench/pdf.py                      # 10,000 customers, 50 versions
    .venv/bin/python bench/pdf.py --customers 2000 --naive 20

The naive row renders one whole WeasyPrint document per customer (a sample, its rate
extrapolated); the fast path renders every customer through renderers.pdf on a process
pool. Both use the same generated newsletters (about three A4 pages each). Wall-clock
ratios depend on what else runs on the machine; the CPU columns (this process and its
workers) do not.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from markupsafe import escape
from pypdf import PdfReader

from renderers.pdf import PdfStats, render_pdf, render_versions

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--naive", type=int, default=40, help="customers for the naive sample")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--templates", default="templates", help="folder with print.css")
    parser.add_argument("--page-size", default="A4", choices=["A4", "Letter"])
    parser.add_argument("--unique-names", action="store_true",
                        help="give every customer a different name (no stamp reuse)")
    args = parser.parse_args()

    jobs = campaign(args.customers, args.versions, unique_names=args.unique_names)
    options = {"page_size": args.page_size, "templates_dir": args.templates}

    load_before = os.getloadavg()[0]
    start, cpu = time.perf_counter(), cpu_seconds()
    naive_pages = 0
    for html in sample(jobs, args.naive):
        naive_pages += pages_of(render_pdf(html, base_url=None, **options))
    naive_seconds, naive_cpu = time.perf_counter() - start, cpu_seconds() - cpu

    stats = PdfStats()
    fast_pages = fast_bytes = 0
    start, cpu = time.perf_counter(), cpu_seconds()
    for pdfs in render_versions(jobs, workers=args.workers, stats=stats, **options):
        for pdf in pdfs:
            fast_pages += pages_of(pdf)
            fast_bytes += len(pdf)
    fast_seconds, fast_cpu = time.perf_counter() - start, cpu_seconds() - cpu

    naive_rate = args.naive / naive_seconds
    fast_rate = args.customers / fast_seconds
    naive_per = naive_cpu / args.naive
    fast_per = fast_cpu / args.customers
    rows = [
        ("naive (one WeasyPrint document per customer)", args.naive, naive_seconds,
         naive_rate, naive_pages / naive_seconds, 1.0, naive_per, 1.0),
        ("edition fast path", args.customers, fast_seconds, fast_rate,
         fast_pages / fast_seconds, fast_rate / naive_rate, fast_per, naive_per / fast_per),
    ]
    print(f"{args.customers} customers in {args.versions} versions, {args.workers} workers, "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'':46} {'customers':>9} {'seconds':>8} {'cust/s':>7} {'pages/s':>7} {'ratio':>6}"
          f" {'CPU ms/cust':>11} {'CPU ratio':>9}")
    for name, n, seconds, rate, page_rate, ratio, per, cpu_ratio in rows:
        print(f"{name:46} {n:>9} {seconds:>8.1f} {rate:>7.2f} {page_rate:>7.1f} {ratio:>5.1f}x"
              f" {per * 1000:>11.1f} {cpu_ratio:>8.1f}x")
    print(f"naive loop at {args.customers} customers, extrapolated: "
          f"{args.customers / naive_rate:.0f} s")
    kib = fast_bytes / args.customers / 1024
    per_pdf = f"{fast_pages / args.customers:.2f} pages, {kib:.0f} KiB"
    print(f"fast path: {stats.summary()}; {stats.versions} version layouts; {per_pdf} per PDF")


if __name__ == "__main__":
    main()
