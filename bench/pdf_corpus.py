"""Benchmark: the PDF fast path on the outside corpus and on a personal `lang`, against a
naive WeasyPrint loop over the same pages, side by side in one process.

    .venv/bin/python bench/pdf_corpus.py                 # 120 customers in 4 versions each
    .venv/bin/python bench/pdf_corpus.py --customers 60 --versions 2
    .venv/bin/python bench/pdf_corpus.py --customers 400 --campaigns weekly-newsletter

bench/corpus.py times the CLI, whose start-up dominates 60 PDFs; this one times only
the PDF stage (Encoder.pdf_version, as the pipeline calls it, one process) on customers
spread over a few versions, so that each version has customers to share its layout
(issue 19 targets: >= 90 % on the fast path, >= 20x the naive loop). Campaigns: each
layout of tests/corpus/templates, and the sample newsletter with
`<html lang="{{ customer.locale | default('en') }}">` (the locale is the version's).
Wall-clock rates on a shared machine; read the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fixtures_corpus import NAMES, corpus_customers, corpus_site  # noqa: E402

from edition.render.encoding import Encoder, pdf_options  # noqa: E402
from edition.render.plan import Plan  # noqa: E402
from renderers.pdf import render_pdf  # noqa: E402

AS_OF = dt.date(2026, 11, 2)
# Segment fields of a few versions (the campaigns segment on these).
VERSIONS = [
    {"locale": "en", "interests": [], "age": 40, "life_stage": "single", "tenure_months": 24,
     "lifetime_value": 1000},
    {"locale": "en", "interests": ["travel"], "age": 30, "life_stage": "family",
     "tenure_months": 3, "lifetime_value": 8000},
    {"locale": "es", "interests": [], "age": 70, "life_stage": "couple", "tenure_months": 60,
     "lifetime_value": 200},
    {"locale": "en", "interests": [], "age": 25, "life_stage": "expecting",
     "tenure_months": 12, "lifetime_value": 500},
]


def lang_campaign(site: Path) -> str:
    """The sample newsletter with a personal lang: its only personal attribute."""
    template = site / "templates" / "newsletter.html.j2"
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace('<html lang="{{ locale }}">',
                                     "<html lang=\"{{ customer.locale | default('en') }}\">"),
                        encoding="utf-8")
    return "weekly-newsletter"


def measure(site: Path, name: str, customers: int, versions: int, naive: int) -> str:
    plan = Plan.load(site / "campaigns" / f"{name}.yaml", formats=("html", "pdf"),
                     as_of=AS_OF)
    encoder = Encoder(plan.campaign, ("html", "pdf"), dt.datetime(2026, 11, 2, tzinfo=dt.UTC))
    groups: dict[Any, list[Any]] = {}
    for i, fields in enumerate(corpus_customers(customers)):
        fields.update(VERSIONS[i % versions])
        version = plan.version_of(fields)[3]
        rendered = plan.renderer.render(version, fields)
        key = (version.digest, rendered.layout.key if rendered.layout else None)
        groups.setdefault(key, []).append((rendered, version))
    pages = [(r.page, v.locale) for group in groups.values() for r, v in group]
    options = pdf_options(plan.campaign)
    render_pdf(pages[0][0], **options, locale=pages[0][1])  # fonts loaded, as a run does
    start = time.perf_counter()
    for page, locale in pages[:naive]:
        render_pdf(page, **options, locale=locale)
    naive_rate = naive / (time.perf_counter() - start)
    start = time.perf_counter()
    for group in groups.values():
        layout = group[0][0].layout
        if layout is None:
            for rendered, version in group:
                encoder.pdf_one(rendered, version.locale)
            continue
        encoder.pdf_version(layout.statics, [r.page or "" for r, _ in group], group[0][1].locale,
                            values=[r.layout.values for r, _ in group])
    rate = len(pages) / (time.perf_counter() - start)
    stats = encoder.pdf_renderer().stats
    top = stats.full.most_common(2)
    return (f"| {name} | {len(groups)} | {rate:.2f}/s | {naive_rate:.2f}/s | "
            f"{rate / naive_rate:.1f} | {stats.fast}/{stats.customers} "
            f"({100 * stats.fast / max(stats.customers, 1):.0f}%) | {stats.direct} | "
            + "; ".join(f"{n} {reason}" for reason, n in top) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=120)
    parser.add_argument("--versions", type=int, default=4, choices=range(1, 5))
    parser.add_argument("--naive", type=int, default=8, help="pages in the naive loop")
    parser.add_argument("--campaigns", default="",
                        help="comma-separated campaigns (default: every corpus layout and "
                             "weekly-newsletter, the personal lang)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edition-bench-pdf-corpus-") as tmp:
        site = corpus_site(Path(tmp) / "site")
        print(f"{args.customers} customers per campaign over {args.versions} versions\n")
        print("| campaign | layouts (version × shape) | PDF stage | naive loop | × naive "
              "| fast path | drawn straight | top others |")
        print("| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |")
        wanted = [n for n in args.campaigns.split(",") if n]
        for name in [*NAMES, lang_campaign(site)]:
            if wanted and name not in wanted:
                continue
            print(measure(site, name, args.customers, args.versions, args.naive), flush=True)


if __name__ == "__main__":
    main()
