"""A run: plan (read and check everything), process batches of customers, finish.

`Plan.load` reads the campaign, the catalog and the templates and fails before anything
is rendered if any of them is wrong. `Plan.process` turns one batch of customer rows into
manifest rows (rendering, writing files, and — only with `send` — delivering). The CLI
and the Prefect flow both drive these same two calls; `execute` is the CLI's loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import secrets
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edition.campaign import Campaign, load_campaign
from edition.catalog import Catalog, load_catalog
from edition.customers import Row, count_rows, read_customers
from edition.editions import EditionRenderer, Rendered, RenderFailure
from edition.errors import ContentError, RunError, UsageError, collect
from edition.output import Manifest, RunFolder, relative_path
from edition.personal import SharedDocument
from edition.report import Tally, write_report
from edition.segments import Segmenter
from edition.selection import Selection, select
from edition.versions import Version, version_id
from renderers import eml as eml_renderer

DEFAULT_BATCH = 500
_NO_VERSION = Version("", "", (), Selection())


@dataclass(frozen=True)
class RunOptions:
    """Everything that defines a run; small and picklable, so workers can rebuild a Plan."""

    campaign: str
    customers: str | None = None
    out: str | None = None
    formats: tuple[str, ...] | None = None
    as_of: dt.date | None = None
    limit: int | None = None
    send: bool = False
    to: str | None = None
    resend_unknown: bool = False
    batch_size: int = DEFAULT_BATCH
    run_id: str | None = None
    started: dt.datetime | None = None

    def resolved(self) -> RunOptions:
        """Fill in the defaults that must be the same in every worker."""
        started = self.started or dt.datetime.now(dt.UTC).replace(microsecond=0)
        run_id = self.run_id or new_run_id(started)
        return replace(self, started=started, run_id=run_id,
                       as_of=self.as_of or dt.date.today(),
                       campaign=str(Path(self.campaign).resolve()))


def new_run_id(started: dt.datetime | None = None) -> str:
    """`20261123-080000-1a2b`: the start time, and a suffix so two runs never share it."""
    started = started or dt.datetime.now(dt.UTC)
    return f"{started:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass
class BatchResult:
    """What one batch gives back: its manifest rows and what the report counts."""

    rows: list[dict[str, Any]]
    missing: Counter = field(default_factory=Counter)     # (segment, field) -> customers
    short: Counter = field(default_factory=Counter)       # slot -> customers short of modules
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    sharing: dict[str, dict[str, str]] = field(default_factory=dict)


class Plan:
    """Loaded, checked content for one run; built once per process."""

    def __init__(self, options: RunOptions, campaign: Campaign, catalog: Catalog):
        self.options = options
        self.campaign = campaign
        self.catalog = catalog
        self.as_of = options.as_of or dt.date.today()
        self.formats = options.formats or campaign.formats
        kinds = set()
        if "html" in self.formats or "eml" in self.formats:
            kinds.add("html")
        if "pdf" in self.formats:
            kinds.add("page")
        if "text" in self.formats or "eml" in self.formats:
            kinds.add("text")
        if "eml" in self.formats:
            kinds.add("subject")
        self.renderer = EditionRenderer(campaign, self.as_of, kinds=tuple(sorted(kinds)))
        self.segmenter = Segmenter(campaign.segments)
        self.slots = [(s.name, s.kind, s.count) for s in campaign.slots]
        self.out_dir = Path(options.out) if options.out else (
            campaign.root / "out" / campaign.name / (options.run_id or new_run_id()))
        self.folder = RunFolder(self.out_dir)
        self._selections: dict[tuple, tuple[Selection, Version]] = {}
        self.writer = eml_renderer.MessageWriter(
            sender=campaign.sender or "edition <edition@localhost>",
            date=options.started or dt.datetime.now(dt.UTC), reply_to=campaign.reply_to)
        self.target = options.to or campaign.delivery.get("to", "local")
        self.deliverer: Any = None
        self._deliverer_lock = threading.Lock()
        self._pdf: Any = None

    @classmethod
    def load(cls, options: RunOptions) -> Plan:
        """Read and check campaign, catalog and templates: every problem at once."""
        errors: list[ContentError] = []
        catalog, catalog_errors = load_catalog(_root_of(options.campaign), raise_errors=False)
        errors.extend(catalog_errors)
        try:
            campaign = load_campaign(options.campaign, kinds=catalog.kinds())
        except ContentError as exc:
            errors[:0] = getattr(exc, "errors", [exc])
            collect(errors)
            raise
        collect(errors)
        if options.to and re.match(r"^\w+://[^/]*@", options.to):
            raise UsageError("--to must not hold credentials; set them in the environment "
                             "(EDITION_SMTP_USERNAME/PASSWORD, AWS profiles)")
        formats = options.formats or campaign.formats
        unknown = [f for f in formats if f not in ("html", "text", "eml", "pdf")]
        if unknown:
            raise UsageError(f"unknown format(s): {', '.join(unknown)}")
        if "eml" in formats and not campaign.sender:
            raise ContentError("the campaign needs a sender to make email (eml)", campaign.file)
        return cls(options, campaign, catalog)

    @property
    def customers_path(self) -> Path:
        if self.options.customers:
            return Path(self.options.customers)
        if self.campaign.customers:
            return self.campaign.root / self.campaign.customers
        raise UsageError("no customer file: pass --customers or set `customers` in the campaign")

    @property
    def need_email(self) -> bool:
        return "eml" in self.formats or (self.options.send and self.target != "local")

    def rows(self) -> Iterator[Row]:
        """The customer rows, streamed and checked."""
        return read_customers(self.customers_path, need_email=self.need_email,
                              declared=self.campaign.fields, limit=self.options.limit)

    # -- per customer ------------------------------------------------------------

    def version_of(self, fields: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, str],
                                                           Selection, Version]:
        """Segments, failed rules, selection and version for one customer."""
        segments, missing = self.segmenter.assign(fields)
        locale = str(fields.get("locale", "en"))
        interests = fields.get("interests") or []
        if not isinstance(interests, list):
            interests = [str(interests)]
        key = (segments, locale, frozenset(str(i).lower() for i in interests))
        cached = self._selections.get(key)
        if cached is None:
            selection = select(self.slots, self.catalog.by_kind, segments=segments,
                               locale=locale, interests=key[2], as_of=self.as_of,
                               campaign=self.campaign.name)
            vid = version_id(campaign=self.campaign.name, templates_digest=self.renderer.digest,
                             locale=locale, segments=segments, selection=selection,
                             as_of=self.as_of)
            cached = (selection, Version(vid, locale, segments, selection))
            self._selections[key] = cached
        return segments, missing, cached[0], cached[1]

    def process(self, batch: Iterable[Row]) -> BatchResult:
        """Render (and, when sending, deliver) one batch; one manifest row per row.

        Two passes: render every customer's documents, then (for PDF) lay out each
        version's customers together, then encode, write and deliver in input order.
        """
        result = BatchResult([])
        rendered_rows: list[tuple[Row, dict[str, Any], tuple[str, ...], Selection, Version,
                                  Rendered | str]] = []
        for row in batch:
            if row.rejected:
                rendered_rows.append((row, {}, (), Selection(), _NO_VERSION, row.reason or ""))
                continue
            fields = dict(row.fields or {})
            segments, missing, selection, version = self.version_of(fields)
            for segment, name in missing.items():
                result.missing[(segment, name)] += 1
            for slot in selection.slots:
                if slot.short:
                    result.short[slot.slot] += 1
            if version.id not in result.versions:
                result.versions[version.id] = {"modules": selection.ids(),
                                               "locale": version.locale,
                                               "segments": list(version.segments)}
            try:
                rendered: Rendered | str = self.renderer.render(version, fields)
            except RenderFailure as exc:
                rendered = str(exc)
            rendered_rows.append((row, fields, segments, selection, version, rendered))
        pdfs = self._pdfs(rendered_rows) if "pdf" in self.formats else {}
        for index, (row, fields, segments, selection, version, rendered) in enumerate(
                rendered_rows):
            if row.rejected:
                result.rows.append(_manifest(row.customer_id, None, [], {}, "rejected",
                                             row.reason, {}, row.line))
                continue
            if isinstance(rendered, str):
                result.rows.append(_manifest(row.customer_id, version.id, segments,
                                             selection.ids(), "failed", rendered, {}, row.line))
                continue
            try:
                digest = (self.content_hash(str(row.customer_id), version, rendered)
                          if "eml" in self.formats or self.options.send else "")
                files, outputs = self._encode(row, fields, version, rendered, digest,
                                              pdfs.get(index))
                for rel, data, _ in outputs.values():
                    self.folder.write(rel, data)
            except RunError as exc:
                result.rows.append(_manifest(row.customer_id, version.id, segments,
                                             selection.ids(), "failed", exc.message, {},
                                             row.line))
                continue
            status, reason, extra = "rendered", None, {}
            if self.options.send:
                status, reason, extra = self._deliver(row, fields, digest, outputs)
            result.rows.append(_manifest(row.customer_id, version.id, segments, selection.ids(),
                                         status, reason, files, row.line) | extra)
        result.sharing = self.renderer.sharing()
        return result

    def _pdfs(self, rendered_rows: list) -> dict[int, bytes]:  # type: ignore[type-arg]
        """Each customer's PDF; a version's customers are laid out together."""
        groups: dict[str, list[int]] = {}
        for index, (_, _, _, _, version, rendered) in enumerate(rendered_rows):
            if not isinstance(rendered, str):
                groups.setdefault(version.id, []).append(index)
        pdfs: dict[int, bytes] = {}
        for indices in groups.values():
            version = rendered_rows[indices[0]][4]
            doc = self.renderer.shared(version).get("page")
            parts = doc.parts if isinstance(doc, SharedDocument) else []
            pages = [rendered_rows[i][5].page or "" for i in indices]
            for i, data in zip(indices, self.pdf_renderer().render_filled(parts, pages),
                               strict=True):
                pdfs[i] = data
        return pdfs

    def pdf_renderer(self) -> Any:
        """One WeasyPrint batch renderer per process (fonts and layouts are cached in it)."""
        if self._pdf is None:
            from renderers.pdf import PdfBatchRenderer  # WeasyPrint only when PDF is asked

            self._pdf = PdfBatchRenderer(
                base_url=str(self.campaign.root / "templates") + "/",
                page_size=str(self.campaign.pdf.get("page_size", "A4")),
                campaign_name=self.campaign.name,
                templates_dir=self.campaign.root / "templates")
        return self._pdf

    def _encode(self, row: Row, fields: dict[str, Any], version: Version, rendered: Rendered,
                digest: str, pdf: bytes | None = None
                ) -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
        customer_id = str(row.customer_id)
        outputs: dict[str, tuple[str, bytes, str]] = {}
        if "html" in self.formats:
            outputs["html"] = (relative_path("html", customer_id),
                               (rendered.html or "").encode(), "text/html; charset=utf-8")
        if "text" in self.formats:
            outputs["text"] = (relative_path("text", customer_id),
                               (rendered.text or "").encode(), "text/plain; charset=utf-8")
        if "eml" in self.formats:
            outputs["eml"] = (relative_path("eml", customer_id),
                              self._message(customer_id, fields, version, rendered, digest),
                              "message/rfc822")
        if "pdf" in self.formats:
            outputs["pdf"] = (relative_path("pdf", customer_id),
                              pdf if pdf is not None else self.pdf_bytes(version, rendered),
                              "application/pdf")
        return {fmt: rel for fmt, (rel, _, _) in outputs.items()}, outputs

    def content_hash(self, customer_id: str, version: Version, rendered: Rendered) -> str:
        """Identifies what this customer gets: same arguments, same hash (ledger key)."""
        h = hashlib.sha256()
        for part in (self.campaign.name, customer_id, version.id, rendered.subject or "",
                     rendered.text or "", rendered.html or ""):
            h.update(part.encode("utf-8", "surrogatepass") + b"\0")
        return h.hexdigest()

    def message_id(self, digest: str) -> str:
        return eml_renderer.message_id(digest, self.campaign.name, self.campaign.sender_domain)

    def _message(self, customer_id: str, fields: dict[str, Any], version: Version,
                 rendered: Rendered, digest: str) -> bytes:
        name = " ".join(str(fields[k]) for k in ("first_name", "last_name") if k in fields)
        unsubscribe = (eml_renderer.unsubscribe_link(self.campaign.unsubscribe_url, customer_id)
                       if self.campaign.unsubscribe_url else None)
        return self.writer.build(
            subject=rendered.subject or "", recipient=str(fields["email"]), recipient_name=name,
            text=rendered.text or "", html=rendered.html,
            msg_id=self.message_id(digest),
            unsubscribe_url=unsubscribe,
            extra_headers={"X-Edition-Campaign": self.campaign.name,
                           "X-Edition-Version": version.id})

    def pdf_bytes(self, version: Version, rendered: Rendered) -> bytes:
        """One customer's PDF on its own (a preview)."""
        return self.pdf_renderer().render_one(rendered.page or "")

    def _deliver(self, row: Row, fields: dict[str, Any], digest: str,
                 outputs: dict[str, tuple[str, bytes, str]]) -> tuple[str, str | None, dict]:
        if self.deliverer is None:
            from edition.delivery import Deliverer  # only a real send needs the publishers

            with self._deliverer_lock:  # a thread-pool task runner shares this Plan
                if self.deliverer is None:
                    self.deliverer = Deliverer(self)
        return self.deliverer.deliver(row, fields, digest, outputs)

    def close(self) -> None:
        if self.deliverer is not None:
            self.deliverer.close()
            self.deliverer = None


def _root_of(campaign_file: str) -> Path:
    from edition.campaign import find_root

    return find_root(Path(campaign_file))


def _manifest(customer_id: str | None, version: str | None, segments: Iterable[str],
              modules: dict[str, list[str]], status: str, reason: str | None,
              files: dict[str, str], line: int) -> dict[str, Any]:
    return {"customer_id": customer_id, "version": version, "segments": list(segments),
            "modules": modules, "status": status, "reason": reason, "files": files,
            "line": line}


# -- one process per CPU: each worker keeps its own Plan ---------------------------

_PLANS: dict[RunOptions, Plan] = {}


def plan_for(options: RunOptions) -> Plan:
    """The Plan for these options in this process (built on first use)."""
    plan = _PLANS.get(options)
    if plan is None:
        plan = _PLANS[options] = Plan.load(options)
    return plan


def process_batch(options: RunOptions, batch: list[Row]) -> BatchResult:
    """Worker entry point (process pools, Prefect tasks)."""
    return plan_for(options).process(batch)


def worker_init() -> None:
    """Pool worker set-up: die with the parent.

    A killed run must not leave orphan workers still sending while a rerun starts; on
    Linux the kernel kills the worker when its parent dies.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def close_plans() -> None:
    for plan in _PLANS.values():
        plan.close()
    _PLANS.clear()


def estimate_rows(plan: Plan) -> int:
    """About how many rows the run will read (for progress bars)."""
    try:
        total = count_rows(plan.customers_path)
    except OSError:
        return 0
    limit = plan.options.limit
    return min(total, limit) if limit is not None else total


def batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class RunSummary:
    """What the CLI prints and the flow returns."""

    run_id: str
    out_dir: str
    counts: dict[str, int]
    customers: int
    versions: int
    seconds: float
    report: str

    @property
    def rate(self) -> float:
        return self.customers / self.seconds if self.seconds else 0.0


class Run:
    """Drives a run from the main process: streams rows out, collects results in order."""

    def __init__(self, options: RunOptions):
        self.options = options.resolved()
        self.plan = plan_for(self.options)
        self.tally = Tally(self.plan)
        self.out_dir = self.plan.out_dir
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.lock = None
        if self.options.send:
            from edition.delivery import run_lock

            self.lock = run_lock(self.plan)
        self.manifest = Manifest(self.out_dir / "manifest.jsonl")
        self.started = dt.datetime.now(dt.UTC)

    def estimate(self) -> int:
        return estimate_rows(self.plan)

    def batches(self) -> Iterator[list[Row]]:
        return batches(self.plan.rows(), self.options.batch_size)

    def collect(self, result: BatchResult) -> None:
        self.manifest.write(result.rows)
        self.tally.add(result)

    def finish(self) -> RunSummary:
        self.manifest.close()
        if self.lock is not None:
            self.lock.close()
        seconds = (dt.datetime.now(dt.UTC) - self.started).total_seconds()
        report = write_report(self.plan, self.tally, self.out_dir, seconds)
        return RunSummary(run_id=self.options.run_id or "", out_dir=str(self.out_dir),
                          counts=dict(self.tally.status), customers=self.tally.rows,
                          versions=len(self.tally.versions), seconds=seconds, report=report)


def execute(options: RunOptions, *, executor: Executor | None = None,
            on_progress: Callable[[int], None] | None = None) -> RunSummary:
    """Run a campaign: with an executor, batches render in its workers, in order."""
    run = Run(options)
    try:
        if executor is None:
            for batch in run.batches():
                run.collect(run.plan.process(batch))
                if on_progress:
                    on_progress(len(batch))
        else:
            window = max(2, (os.cpu_count() or 2) * 2)  # bounded: memory stays flat
            pending: list = []
            for batch in run.batches():
                pending.append((len(batch), executor.submit(process_batch, run.options, batch)))
                while len(pending) >= window:
                    size, future = pending.pop(0)
                    run.collect(future.result())
                    if on_progress:
                        on_progress(size)
            for size, future in pending:
                run.collect(future.result())
                if on_progress:
                    on_progress(size)
    finally:
        run.plan.close()
    return run.finish()
