"""The pipeline: one batch of customer rows in, manifest rows and written files out.

Per row: segment, select, version (plan.py), render once per version and fill the
personal layer (editions.py), encode each format (encoding.py), write the files, and —
only when sending — deliver (delivery.py). A row that cannot be rendered becomes a
`failed` manifest row with its reason; it never stops the batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edition.audience.customers import Row
from edition.audience.preferences import APPLIED, RESUBSCRIBED, PreferenceSnapshot
from edition.audience.preferred_time import preferred_time_deferral
from edition.audience.suppression import Suppression
from edition.content.limits import watchdog
from edition.errors import DeliveryError, RunError
from edition.outcomes import ManifestRow, Reason
from edition.render.editions import Rendered, RenderFailure
from edition.render.encoding import Encoder
from edition.render.plan import Plan
from edition.render.versions import Version
from edition.run.cadence import Cadence
from edition.run.folder import FileWriter
from edition.send.delivery import Deliverer, Message


@dataclass
class BatchResult:
    """What one batch gives back: its manifest rows and what the report counts."""

    rows: list[ManifestRow]
    # (segment, field) -> customers
    missing: Counter[tuple[str, str]] = field(default_factory=Counter)
    short: Counter[str] = field(default_factory=Counter)   # slot -> customers short of modules
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    sharing: dict[str, dict[str, str]] = field(default_factory=dict)
    # (path, "shared" | "fast" | why not) -> customers: how each rendered customer's
    # html/text/eml ("html") and PDF ("pdf") were made
    paths: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass
class WorkItem:
    """A row on its way through the batch."""

    row: Row
    fields: dict[str, Any]
    version: Version | None = None
    segments: tuple[str, ...] = ()
    modules: dict[str, list[str]] = field(default_factory=dict)
    rendered: Rendered | None = None
    failure: Reason | None = None
    skipped: tuple[str, Reason] | None = None   # excluded or suppressed: no files, no send
    pdf: bytes | None = None
    experiment: dict[str, str] | None = None   # {"name", "variant"} (audience/experiments)

    def manifest(self, status: str, reason: Reason | None = None,
                 files: dict[str, str] | None = None, **extra: Any) -> ManifestRow:
        if self.experiment is not None:
            extra = {"experiment": self.experiment, **extra}
        if APPLIED in self.fields:   # what the customer's own choices changed
            extra = {"choices": self.fields[APPLIED], **extra}
        if RESUBSCRIBED in self.fields:
            extra = {"resubscribed": self.fields[RESUBSCRIBED], **extra}
        return ManifestRow(customer_id=self.row.customer_id, status=status, line=self.row.line,
                           version=self.version.id if self.version else None,
                           version_digest=self.version.digest if self.version else None,
                           segments=list(self.segments), modules=self.modules, reason=reason,
                           files=files or {}, extra=extra)


def internal_error(exc: BaseException) -> Reason:
    """A failure nobody planned for, worded for the manifest (the run goes on)."""
    text = str(exc)[:300] or type(exc).__name__
    return Reason("internal_error", f"internal error ({type(exc).__name__}): {text}",
                  f"internal error ({type(exc).__name__})")


def count_skipped(tally: Any, skipped: tuple[str, Any]) -> None:
    """Count an excluded or suppressed customer, and why, into a census or a scan."""
    status, reason = skipped
    tally.excluded += status == "excluded"
    tally.suppressed += status == "suppressed"
    tally.reasons[f"{status}: {getattr(reason, 'group', reason)}"] += 1


class Pipeline:
    """Renders (and, with a deliverer, delivers) batches for one run, in one process."""

    def __init__(self, plan: Plan, writer: FileWriter | Any, encoder: Encoder,
                 deliverer: Deliverer | None = None, suppression: Suppression | None = None,
                 cadence: Cadence | None = None,
                 preferences: PreferenceSnapshot | None = None):
        self.plan = plan
        self.cadence = cadence   # holdout, frequency cap, send window (run/cadence.py)
        self.writer = writer
        self.encoder = encoder
        self.deliverer = deliverer
        self.suppression = suppression
        # the customers' preference-center choices, read once (audience/preferences.py)
        self.preferences = preferences if preferences is not None else \
            PreferenceSnapshot.load(plan.campaign, getattr(plan, "as_of", None))
        # html, text and eml share one UTF-8 encoding of the documents per customer
        self._documents = bool({"html", "text", "eml"} & set(plan.formats))
        self._pdf = "pdf" in plan.formats

    def process(self, batch: Iterable[Row]) -> BatchResult:
        """One manifest row per row, in order.

        Two passes: render every customer's documents, then (for PDF) lay out each
        version's customers together, then encode, write and deliver in input order.
        """
        result = BatchResult([])
        self.writer.written.clear()  # ids are unique and names injective: a per-batch guard
        items = [self._render(row, result) for row in batch]
        self._count_paths(items, result)
        if "pdf" in self.plan.formats:
            self._pdfs(items, result)
        pending: list[tuple[int, WorkItem, dict[str, str], Message]] = []
        for item in items:
            try:
                done = self._finish(item)
            except DeliveryError:
                raise  # the target is unusable: the run stops (the rest is repaired)
            except Exception as exc:  # one customer's encoding bug is that customer's
                done = item.manifest("failed", internal_error(exc))
            if isinstance(done, ManifestRow):
                result.rows.append(done)
            else:   # written, to be sent with the others in flight (delivery.in_flight)
                pending.append((len(result.rows), item, *done))
                # A placeholder that never reaches the manifest: deliver_many returns one
                # result per message or raises, and a batch that raises is not collected
                # (the lifecycle's repair lists its customers from their files: `unknown`,
                # the ledger decides on the rerun); a kill writes nothing of the batch.
                # test_a_target_error_mid_window_leaves_no_sent_customer_shown_failed
                result.rows.append(item.manifest("failed", None))   # replaced below
        if pending and self.deliverer is not None:
            sent_all = self.deliverer.deliver_many([m for *_, m in pending],
                                                   in_flight=self.deliverer.in_flight)
            for (at, item, paths, _), sent in zip(pending, sent_all, strict=True):
                result.rows[at] = item.manifest(sent.status, sent.reason, paths, **sent.extra)
        self.writer.flush()  # an object store's uploads: a batch is done when its files are
        if self.deliverer is not None:
            self.deliverer.flush()
        result.sharing = self.plan.renderer.sharing_of(result.versions)
        return result

    def _render(self, row: Row, result: BatchResult) -> WorkItem:
        item = self.prepare(row, result)
        if item.version is None or item.failure is not None:
            return item
        try:
            with watchdog.limit(self.plan.campaign.limits.render_seconds):
                item.rendered = self.encoder.tracked(
                    self.plan.renderer.render(item.version, item.fields),
                    item.version, str(row.customer_id), item.fields)
            if not self._pdf:   # only the PDF pass reads the layout: let it go now, not
                item.rendered.layout = None   # with the batch (fewer objects for the GC)
        except RenderFailure as exc:
            item.failure = Reason("render_failed" if exc.code == "error" else exc.code,
                                     str(exc), exc.message)
        except Exception as exc:  # a bug must fail this customer, never the whole run
            item.failure = internal_error(exc)
        return item

    def prepare(self, row: Row, result: BatchResult, *, links: bool = True) -> WorkItem:
        """Everything before rendering: version, audience, suppression, personal links.

        `links=False` leaves the unsubscribe link to `sign_links` (preflight signs only the
        customers it renders)."""
        item = WorkItem(row, dict(row.fields or {}))
        if row.rejected:
            return item
        if (chosen := self.preferences.apply(item.fields)) is not None:
            item.skipped = ("suppressed", chosen)   # paused, or every topic off
            return item
        if self.deliverer is not None and (wait := preferred_time_deferral(
                item.fields, self.encoder.started)) is not None:
            item.skipped = ("excluded", wait)   # sent by a later run of the mailing
            return item
        try:
            segments, missing, selection, version = self.plan.version_of(item.fields)
        except Exception as exc:  # a value no rule or selection expected: this row only
            item.failure = internal_error(exc)
            return item
        item.segments, item.modules = segments, selection.ids()
        if selection.experiment is not None:
            item.experiment = {"name": selection.experiment.name,
                                  "variant": selection.experiment.variant}
            if selection.experiment.cell != "test":   # test then winner: not counted
                item.experiment["cell"] = selection.experiment.cell
        try:
            excluded = self.plan.audience.exclusion(item.fields, segments, selection)
            if excluded is not None:
                item.skipped = ("excluded", excluded)
                return item
            suppressed = (self.suppression.reason_for(item.fields)
                          if self.suppression is not None else None)
        except Exception as exc:  # a value no rule expected: this row only
            item.failure = internal_error(exc)
            return item
        if suppressed is not None:  # in dry runs too, so a preview tells the truth
            item.skipped = ("suppressed", suppressed)
            return item
        if self.suppression is not None and (
                back := self.suppression.resubscribed(item.fields)) is not None:
            # in again only by their own "subscribe again": the manifest and preview say so
            item.fields[RESUBSCRIBED] = back
            item.fields[APPLIED] = [*item.fields.get(APPLIED, ()), "resubscribed"]
        if self.cadence is not None:
            item.skipped = self.cadence.hold(row.customer_id, item.fields)
            if item.skipped is not None:
                return item
        item.version = version
        if links:
            self.sign_links(item)
        for segment, name in missing.items():
            result.missing[(segment, name)] += 1
        for slot in selection.slots:
            if slot.short:
                result.short[slot.slot] += 1
        if version.digest not in result.versions:
            # module digests: `edition diff` tells an edited module from another module
            digests = {slot: {m.id: m.digest for m in modules}
                       for slot, modules in selection.modules().items()}
            # slots ranked by clicks: `edition diff` says their modules were learned, not edited
            learned = [slot.name for slot in self.plan.campaign.slots if slot.rank == "learn"]
            result.versions[version.digest] = {"id": version.id, "modules": item.modules,
                                               "locale": version.locale,
                                               "segments": list(version.segments),
                                               "digests": digests, "learned": learned}
        return item

    def sign_links(self, item: WorkItem) -> None:
        """The personal layer's one-click link: signed, never the bare customer id."""
        if self.encoder.links is not None:
            if self.encoder.links.unsubscribes:   # not for a transactional campaign
                item.fields["unsubscribe_url"] = self.encoder.links.url(
                    str(item.row.customer_id), item.fields.get("email"),
                    item.fields.get("locale"))
            preferences = self.encoder.links.preferences_url(
                str(item.row.customer_id), item.fields.get("email"),
                item.fields.get("locale"))
            if preferences is not None:
                item.fields["preferences_url"] = preferences

    def _count_paths(self, items: list[WorkItem], result: BatchResult) -> None:
        """How many customers took the shared path for html, text and eml, and why not."""
        kinds = [k for k in ("html", "text", "subject") if k in self.plan.renderer.kinds]
        if not kinds:
            return
        for item in items:
            if item.rendered is None:
                continue
            paths = item.rendered.paths
            why = next((paths.get(k, "rendered whole") for k in kinds
                        if paths.get(k) != "shared"), "shared")
            result.paths[("html", why)] += 1

    def _pdfs(self, items: list[WorkItem], result: BatchResult) -> None:
        """Each customer's PDF; a version's customers of one shape are laid out together."""
        groups: dict[tuple[str, Any], list[WorkItem]] = {}
        for item in items:
            if item.rendered is not None and item.version is not None:
                layout = item.rendered.layout
                key = (item.version.digest, layout.key if layout is not None else None)
                groups.setdefault(key, []).append(item)
        stats = self.encoder.pdf_renderer().stats
        fast, full = stats.fast, Counter(stats.full)
        for group in groups.values():
            layout = group[0].rendered.layout  # type: ignore[union-attr]
            parts = layout.statics if layout is not None else []
            pages = [e.rendered.page or "" for e in group]  # type: ignore[union-attr]
            locale = group[0].version.locale  # type: ignore[union-attr]
            pdfs = self.encoder.pdf_version(parts, pages, locale, values=[
                e.rendered.layout.values if e.rendered.layout is not None else []  # type: ignore[union-attr]
                for e in group] if layout is not None else None)
            for item, data in zip(group, pdfs, strict=True):
                item.pdf = data
        result.paths[("pdf", "fast")] += stats.fast - fast
        for reason, n in (stats.full - full).items():
            result.paths[("pdf", reason)] += n

    def _finish(self, item: WorkItem) -> ManifestRow | tuple[dict[str, str], Message]:
        """The customer's manifest row; or, when messages go several in flight, the
        written files' paths and the message to send with the batch's others."""
        row = item.row
        if row.rejected:
            return ManifestRow(customer_id=row.customer_id, status="rejected", line=row.line,
                               reason=row.reason)
        if item.skipped is not None:
            return item.manifest(*item.skipped)
        if item.rendered is None or item.version is None:
            return item.manifest("failed", item.failure)
        customer_id = str(row.customer_id)
        try:
            documents = (self.encoder.documents(item.rendered)
                         if self._documents else None)
            digest = (self.encoder.content_hash(customer_id, item.version.digest,
                                                item.rendered, documents)
                      if "eml" in self.plan.formats or self.deliverer else "")
            files = self.encoder.files(customer_id, item.fields, item.version.id,
                                       item.rendered, digest, item.pdf, documents)
            for rel, data, _ in files.values():
                self.writer.write(rel, data)
        except RunError as exc:
            return item.manifest("failed", Reason("write_failed", exc.message))
        except UnicodeError as exc:
            return item.manifest("failed", Reason("encoding_failed", (
                f"cannot encode this customer's edition: {exc}"), "cannot encode"))
        paths = {fmt: rel for fmt, (rel, _, _) in files.items()}
        if self.deliverer is None:
            return item.manifest("rendered", None, paths)
        if self.deliverer.in_flight > 1:
            return paths, Message(customer_id=customer_id, recipient=item.fields.get("email"),
                                  digest=digest, message_id=self.encoder.message_id(digest),
                                  files=files, subject=item.rendered.subject)
        sent = self.deliverer.deliver(customer_id=customer_id,
                                      recipient=item.fields.get("email"), digest=digest,
                                      message_id=self.encoder.message_id(digest), files=files,
                                      subject=item.rendered.subject)
        return item.manifest(sent.status, sent.reason, paths, **sent.extra)

    def close(self) -> None:
        if self.deliverer is not None:
            self.deliverer.close()
            self.deliverer = None
