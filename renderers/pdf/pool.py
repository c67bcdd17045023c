"""The batch renderer on a process pool: one long-lived renderer per worker, a version's
customers sent in chunks, results in order."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from renderers.pdf.renderer import PdfBatchRenderer, SharedDocument
from renderers.pdf.stats import PdfStats

_worker: PdfBatchRenderer | None = None


def _init_worker(options: dict[str, Any]) -> None:
    global _worker
    _worker = PdfBatchRenderer(**options)


def _work(parts: tuple[str, ...], htmls: list[str], prepare: bool,
          locale: str | None = None) -> tuple[list[bytes], PdfStats]:
    assert _worker is not None
    before = _worker.stats
    _worker.stats = PdfStats()
    try:
        return (_worker.render_filled(parts, htmls, prepare=prepare, locale=locale),
                _worker.stats)
    finally:
        before.add(_worker.stats)
        _worker.stats = before


def render_versions(
    jobs: Iterable[tuple[SharedDocument, Sequence[Any]]
                   | tuple[SharedDocument, Sequence[Any], str | None]],
    *,
    workers: int | None = None,
    chunk_size: int = 250,
    stats: PdfStats | None = None,
    **options: Any,
) -> Iterator[list[bytes]]:
    """For each (version document, customers[, locale]) job, in order, the customers'
    PDFs, from ``workers`` processes (one per CPU), each a PdfBatchRenderer made from
    ``options``."""
    # A version's customers go out in chunks.
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(options,)) as pool:
        queue: deque[tuple[int, bool, Future[tuple[list[bytes], PdfStats]]]] = deque()
        collected: list[bytes] = []

        def take() -> list[bytes] | None:
            _, last_chunk, future = queue.popleft()
            pdfs, chunk_stats = future.result()
            if stats is not None:
                stats.add(chunk_stats)
            collected.extend(pdfs)
            if not last_chunk:
                return None
            done = collected.copy()
            collected.clear()
            return done

        for job, (doc, customers, *rest) in enumerate(jobs):
            locale = rest[0] if rest else None
            htmls = [doc.fill(customer) for customer in customers]
            starts = range(0, len(htmls), chunk_size) or [0]
            for start in starts:
                chunk = htmls[start : start + chunk_size]
                # Laying a version out for sharing costs about one whole render (its
                # stamps a millisecond each): worth it from two customers on, even when a
                # chunk holds only one of them.
                future = pool.submit(_work, tuple(doc.parts), chunk, len(htmls) >= 2, locale)
                queue.append((job, start == starts[-1], future))
                # A few chunks in flight per worker, not the whole campaign in memory.
                while len(queue) > 3 * workers:
                    if (done := take()) is not None:
                        yield done
        while queue:
            if (done := take()) is not None:
                yield done
