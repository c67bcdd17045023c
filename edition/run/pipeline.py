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
from edition.audience.preferences import APPLIED, PreferenceSnapshot
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
from edition.send.delivery import Deliverer


@dataclass
class BatchResult:
    """What one batch gives back: its manifest rows and what the report counts."""

    rows: list[ManifestRow]
    missing: Counter = field(default_factory=Counter)     # (segment, field) -> customers
    short: Counter = field(default_factory=Counter)       # slot -> customers short of modules
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    sharing: dict[str, dict[str, str]] = field(default_factory=dict)
    # (path, "shared" | "fast" | why not) -> customers: how each rendered customer's
    # html/text/eml ("html") and PDF ("pdf") were made
    paths: Counter = field(default_factory=Counter)


@dataclass
class Edition:
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

    def process(self, batch: Iterable[Row]) -> BatchResult:
        """One manifest row per row, in order.

        Two passes: render every customer's documents, then (for PDF) lay out each
        version's customers together, then encode, write and deliver in input order.
        """
        result = BatchResult([])
        self.writer.written.clear()  # ids are unique and names injective: a per-batch guard
        editions = [self._render(row, result) for row in batch]
        self._count_paths(editions, result)
        if "pdf" in self.plan.formats:
            self._pdfs(editions, result)
        for edition in editions:
            try:
                result.rows.append(self._finish(edition))
            except DeliveryError:
                raise  # the target is unusable: the run stops (the rest is repaired)
            except Exception as exc:  # one customer's encoding bug is that customer's
                result.rows.append(edition.manifest("failed", internal_error(exc)))
        self.writer.flush()  # an object store's uploads: a batch is done when its files are
        if self.deliverer is not None:
            self.deliverer.flush()
        result.sharing = self.plan.renderer.sharing_of(result.versions)
        return result

    def _render(self, row: Row, result: BatchResult) -> Edition:
        edition = self.prepare(row, result)
        if edition.version is None or edition.failure is not None:
            return edition
        try:
            with watchdog.limit(self.plan.campaign.limits.render_seconds):
                edition.rendered = self.encoder.tracked(
                    self.plan.renderer.render(edition.version, edition.fields),
                    edition.version, str(row.customer_id), edition.fields)
        except RenderFailure as exc:
            edition.failure = Reason("render_failed" if exc.code == "error" else exc.code,
                                     str(exc), exc.message)
        except Exception as exc:  # a bug must fail this customer, never the whole run
            edition.failure = internal_error(exc)
        return edition

    def prepare(self, row: Row, result: BatchResult, *, links: bool = True) -> Edition:
        """Everything before rendering: version, audience, suppression, personal links.

        `links=False` leaves the unsubscribe link to `sign_links` (preflight signs only the
        customers it renders)."""
        edition = Edition(row, dict(row.fields or {}))
        if row.rejected:
            return edition
        if (chosen := self.preferences.apply(edition.fields)) is not None:
            edition.skipped = ("suppressed", chosen)   # paused, or every topic off
            return edition
        try:
            segments, missing, selection, version = self.plan.version_of(edition.fields)
        except Exception as exc:  # a value no rule or selection expected: this row only
            edition.failure = internal_error(exc)
            return edition
        edition.segments, edition.modules = segments, selection.ids()
        if selection.experiment is not None:
            edition.experiment = {"name": selection.experiment.name,
                                  "variant": selection.experiment.variant}
        try:
            excluded = self.plan.audience.exclusion(edition.fields, segments, selection)
            if excluded is not None:
                edition.skipped = ("excluded", excluded)
                return edition
            suppressed = (self.suppression.reason_for(edition.fields)
                          if self.suppression is not None else None)
        except Exception as exc:  # a value no rule expected: this row only
            edition.failure = internal_error(exc)
            return edition
        if suppressed is not None:  # in dry runs too, so a preview tells the truth
            edition.skipped = ("suppressed", suppressed)
            return edition
        if self.cadence is not None:
            edition.skipped = self.cadence.hold(row.customer_id, edition.fields)
            if edition.skipped is not None:
                return edition
        edition.version = version
        if links:
            self.sign_links(edition)
        for segment, name in missing.items():
            result.missing[(segment, name)] += 1
        for slot in selection.slots:
            if slot.short:
                result.short[slot.slot] += 1
        if version.digest not in result.versions:
            # module digests: `edition diff` tells an edited module from another module
            digests = {slot: {m.id: m.digest for m in modules}
                       for slot, modules in selection.modules().items()}
            result.versions[version.digest] = {"id": version.id, "modules": edition.modules,
                                               "locale": version.locale,
                                           "segments": list(version.segments),
                                           "digests": digests}
        return edition

    def sign_links(self, edition: Edition) -> None:
        """The personal layer's one-click link: signed, never the bare customer id."""
        if self.encoder.links is not None:
            edition.fields["unsubscribe_url"] = self.encoder.links.url(
                str(edition.row.customer_id), edition.fields.get("email"),
                edition.fields.get("locale"))
            preferences = self.encoder.links.preferences_url(
                str(edition.row.customer_id), edition.fields.get("email"),
                edition.fields.get("locale"))
            if preferences is not None:
                edition.fields["preferences_url"] = preferences

    def _count_paths(self, editions: list[Edition], result: BatchResult) -> None:
        """How many customers took the shared path for html, text and eml, and why not."""
        kinds = [k for k in ("html", "text", "subject") if k in self.plan.renderer.kinds]
        if not kinds:
            return
        for edition in editions:
            if edition.rendered is None:
                continue
            paths = edition.rendered.paths
            why = next((paths.get(k, "rendered whole") for k in kinds
                        if paths.get(k) != "shared"), "shared")
            result.paths[("html", why)] += 1

    def _pdfs(self, editions: list[Edition], result: BatchResult) -> None:
        """Each customer's PDF; a version's customers of one shape are laid out together."""
        groups: dict[tuple[str, Any], list[Edition]] = {}
        for edition in editions:
            if edition.rendered is not None and edition.version is not None:
                layout = edition.rendered.layout
                key = (edition.version.digest, layout.key if layout is not None else None)
                groups.setdefault(key, []).append(edition)
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
            for edition, data in zip(group, pdfs, strict=True):
                edition.pdf = data
        result.paths[("pdf", "fast")] += stats.fast - fast
        for reason, n in (stats.full - full).items():
            result.paths[("pdf", reason)] += n

    def _finish(self, edition: Edition) -> ManifestRow:
        row = edition.row
        if row.rejected:
            return ManifestRow(customer_id=row.customer_id, status="rejected", line=row.line,
                               reason=row.reason)
        if edition.skipped is not None:
            return edition.manifest(*edition.skipped)
        if edition.rendered is None or edition.version is None:
            return edition.manifest("failed", edition.failure)
        customer_id = str(row.customer_id)
        try:
            documents = (self.encoder.documents(edition.rendered)
                         if self._documents else None)
            digest = (self.encoder.content_hash(customer_id, edition.version.digest,
                                                edition.rendered, documents)
                      if "eml" in self.plan.formats or self.deliverer else "")
            files = self.encoder.files(customer_id, edition.fields, edition.version.id,
                                       edition.rendered, digest, edition.pdf, documents)
            for rel, data, _ in files.values():
                self.writer.write(rel, data)
        except RunError as exc:
            return edition.manifest("failed", Reason("write_failed", exc.message))
        except UnicodeError as exc:
            return edition.manifest("failed", Reason("encoding_failed", (
                f"cannot encode this customer's edition: {exc}"), "cannot encode"))
        paths = {fmt: rel for fmt, (rel, _, _) in files.items()}
        if self.deliverer is None:
            return edition.manifest("rendered", None, paths)
        sent = self.deliverer.deliver(customer_id=customer_id,
                                      recipient=edition.fields.get("email"), digest=digest,
                                      message_id=self.encoder.message_id(digest), files=files,
                                      subject=edition.rendered.subject)
        return edition.manifest(sent.status, sent.reason, paths, **sent.extra)

    def close(self) -> None:
        if self.deliverer is not None:
            self.deliverer.close()
            self.deliverer = None
