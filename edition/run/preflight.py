"""Preflight: everything that can be known before a run writes a single file.

`edition validate CAMPAIGN --customers PATH` runs it, and so does every run first.
Each version is rendered once, whole, for a real customer of it, under the campaign's
limits, and every problem is reported at once:

- errors (exit 2, nothing written): a version too large, too slow, too deep or refused
  by the sandbox (it would fail every customer of it); a column every row needs missing
  from the whole file (one message, not a reject per row); marketing e-mail sent
  without an unsubscribe URL; for PDF, an image, stylesheet or font that the render may
  not fetch (outside the content root, a host not in pdf.allow_hosts) or cannot (a
  missing file), naming the module or template and the URL (edition.pdf_resources);
- errors too: a customer field that a template, the subject or a module body prints
  (with nothing to fall back on) and that no customer it reaches has: every one of them
  would fail (item.fields finds those places in Jinja's AST);
- warnings (listed; fatal with --strict): a printed field that some customers lack
  (how many, and the template line); fields that rules and templates read but the
  customer file lacks (with "did you mean"); module front matter keys that look like
  misspelt known ones; HTML over 102 KB, which Gmail clips, and an
  unsubscribe link after the clip point; images without alt text; no `lang` on
  <html>; no preheader; unsigned unsubscribe links; a customer whose own data fails;
- facts: the audience, and how many customers would be excluded or suppressed; how
  many customers' own choices (the preference center) change what they get, and how
  many get nothing by their choice (paused, every topic off).
"""

from __future__ import annotations

import re
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, TemplateError, meta, nodes

from edition.audience.customers import Row, Source, batches, columns, read_customers
from edition.audience.preferences import APPLIED, DECLINED
from edition.content.campaign import by_locale
from edition.content.errors_at_lines import closest, line_of
from edition.content.fields import Print, prints
from edition.content.limits import watchdog
from edition.content.yamlfile import load_yaml
from edition.errors import ContentError
from edition.render.editions import RenderFailure
from edition.render.pdf_resources import page_problems, stylesheet_problems
from edition.render.plan import Plan
from edition.render.versions import Version
from edition.run.mail_html import mail_program_problems
from edition.run.options import RunOptions
from edition.run.pipeline import BatchResult, Pipeline, count_skipped
from edition.run.sender_health import check_send

CONTENT_CODES = {"too_large", "too_slow", "too_deep", "sandbox"}
ENGINE_FIELDS = {"id", "email", "locale", "interests", "unsubscribe_url", "preferences_url",
                 "large_type", "preferred_format", "preferred_frequency"}
# customer fields the run adds, and when
MADE_BY_THE_RUN = {"unsubscribe_url": "the signed unsubscribe link: the run makes it for "
                                      "e-mail, when the campaign sets unsubscribe_url",
                   "preferences_url": "the signed preference-center link: the run makes it "
                                      "for e-mail, when the campaign sets preferences.url",
                   "large_type": "the customer's large-type choice (preference center)",
                   "preferred_format": "the customer's format choice (preference center)"}


@dataclass
class Preflight:
    """What preflight found: errors stop the run (exit 2), warnings are listed."""

    rows: int = 0
    rejected: int = 0
    excluded: int = 0
    suppressed: int = 0
    versions: dict[str, int] = field(default_factory=dict)   # version digest -> customers
    errors: list[ContentError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)    # excluded/suppressed why
    # per (file, line, field) a template prints: customers who get there, who lack it
    reached: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    lacking: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    chosen: int = 0                      # customers whose own choices change their edition
    choices: Counter[str] = field(default_factory=Counter)    # choice -> customers
    declined: int = 0                    # customers who get nothing by their own choice

    @property
    def audience(self) -> int:
        """Customers the run would render (and send)."""
        return self.rows - self.rejected - self.excluded - self.suppressed

    def facts(self) -> list[str]:
        line = (f"{self.rows:,} customer rows: {self.audience:,} in the audience, "
                f"{self.excluded:,} excluded, {self.suppressed:,} suppressed, "
                f"{self.rejected:,} rejected; {len(self.versions):,} versions")
        facts = [line]
        if self.chosen or self.declined:
            facts.append(
                f"customers' own choices (preference center): {self.chosen:,} get an edition "
                f"they changed (" + (", ".join(f"{name} {n:,}" for name, n in
                                              sorted(self.choices.items())) or "none")
                + f"), {self.declined:,} get nothing by their choice (paused or every "
                  f"topic off)")
        return facts + [f"{n:,} × {why}" for why, n in self.reasons.most_common(10)]

    def table(self) -> list[tuple[str, str]]:
        """(level, message) rows for the report and the flow's artifacts."""
        return ([("error", str(e)) for e in self.errors]
                + [("warning", w) for w in self.warnings]
                + [("info", f) for f in self.facts()])


@dataclass
class Scan:
    """What one batch of rows told preflight, made where the batch was read (in this
    process, or in a pool worker while the other workers scan other batches)."""

    rows: int = 0
    rejected: int = 0
    excluded: int = 0
    suppressed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    versions: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[str, str, str | None, int | None]] = field(default_factory=list)
    customers: list[tuple[str, str]] = field(default_factory=list)  # (version, warning)
    html: dict[str, list[str]] = field(default_factory=dict)        # warning -> versions
    reached: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    lacking: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    chosen: int = 0
    choices: Counter[str] = field(default_factory=Counter)
    declined: int = 0


# Scanning a batch yields rows of preflight's tally; `absorb` adds scans up in input order.
# (job: edition.run.workers.RenderJob, the dry run's, batches) -> scans
Scanner = Callable[[Any, Iterator[list[Row]]], Iterable[Scan]]


def run_preflight(options: RunOptions, plan: Plan, *, source: Source, pipeline: Pipeline,
                  email: bool, makes_email: bool, scanner: Scanner | None = None,
                  scan_job: Any = None) -> Preflight:
    """The whole preflight for a run over its customer file (see the module docstring).

    `pipeline` is the run's dry pipeline (audience, suppression, links); `email` says
    whether rows need an address, `makes_email` whether the run writes or sends e-mail.
    """
    sending = options.send
    campaign = plan.campaign
    found = Preflight()
    header = columns(source)
    _required_columns(found, header, email=email, file=str(source))
    found.warnings += content_notes(plan)
    reads = _fields_read(plan, header)
    if makes_email and campaign.kind != "transactional" and not campaign.unsubscribe_url:
        message = ("marketing e-mail needs unsubscribe_url (where the unsubscribe server "
                   "answers), or kind: transactional")
        if sending:
            found.errors.append(ContentError(message, campaign.file))
        else:
            found.warnings.append(f"{campaign.file}: {message}; a send is refused")
    if sending and makes_email:   # the last mailing's complaint rate (sender_health)
        errors, warnings = check_send(campaign, force=options.force)
        found.errors += [ContentError(e, campaign.file) for e in errors]
        found.warnings += warnings
    if pipeline.encoder.links is not None and not pipeline.encoder.links.signed:
        what = "unsubscribe" if pipeline.encoder.links.unsubscribes else "preference-center"
        found.warnings.append(f"{what} links are unsigned (EDITION_UNSUBSCRIBE_SECRET is "
                              "not set): set it before sending")
    if "pdf" in plan.formats:
        found.errors += stylesheet_problems(campaign)
    if found.errors and any("has no" in str(e) for e in found.errors):
        found.warnings += reads.values()
        return found  # a file without its id or email column: reading it tells nothing more
    rows = read_customers(source, need_email=email, declared=campaign.fields,
                          limit=options.limit)
    if scanner is None or scan_job is None:
        absorb(found, [scan_rows(plan, pipeline, rows, set())])
    else:  # the pool's workers scan batches side by side; their renders stay cached there
        absorb(found, scanner(scan_job, batches(rows, options.batch_size)))
    told = _printed_fields(found, header)
    found.warnings += [w for name, w in reads.items() if name not in told]
    return found


def content_notes(plan: Plan) -> list[str]:
    """Warnings about the content itself: module front matter keys that look like
    misspelt known ones (`valid_untill`), for the modules this campaign may use."""
    return [note for module in plan.catalog
            if module.campaigns is None or plan.campaign.name in module.campaigns
            for note in module.notes] + unknown_names(plan)


# names Jinja itself gives a template (loops, macros, blocks)
JINJA_NAMES = frozenset({"loop", "self", "super", "caller", "varargs", "kwargs"})


def unknown_names(plan: Plan) -> list[str]:
    """The names the campaign's page and text templates read that no context holds:
    `{% for o in offers %}` where the slot is `offer` is always empty, silently."""
    env = plan.renderer.env
    slot_names = [slot.name for slot in plan.campaign.slots]
    known = {*CONTEXT_NAMES, *slot_names, *env.globals, *JINJA_NAMES}
    notes = []
    for name in filter(None, (plan.campaign.template, plan.campaign.text_template)):
        try:
            tree = env.parse(_template_source(env, name))
        except TemplateError:
            continue   # the template's own check reports it
        stored = _stored_names(tree)
        seen: set[str] = set()
        for node in tree.find_all(nodes.Name):
            assert isinstance(node, nodes.Name)   # find_all's own filter
            if (node.ctx != "load" or node.name in known or node.name in stored
                    or node.name in seen):
                continue
            seen.add(node.name)
            hint = closest(node.name, known - JINJA_NAMES)
            notes.append(f"templates/{name}:{node.lineno}: reads {node.name!r}, which is not a "
                         f"name templates see: it is always undefined (slots: "
                         f"{', '.join(slot_names) or 'none'})"
                         + (f" (did you mean {hint!r}?)" if hint else ""))
    return notes


def scan_rows(plan: Plan, pipeline: Any, rows: Iterable[Row], rendered: set[str]) -> Scan:
    """Count the rows and render every version not in `rendered` once, for its first
    customer here (the run that follows in this process reuses the render); count, per
    template line, the customers who get there without a field it prints."""
    scan = Scan()
    printed = printed_by(plan)
    provided = _provided(plan, pipeline)
    places: dict[tuple[str, tuple[str, ...]], list[tuple[tuple[str, int, str],
                                                        list[Print]]]] = {}
    for row in rows:
        scan.rows += 1
        if row.rejected:
            scan.rejected += 1
            continue
        if pipeline is not None:
            item = pipeline.prepare(row, BatchResult([]), links=False)
            if item.skipped is not None:
                count_skipped(scan, item.skipped)
                scan.declined += getattr(item.skipped[1], "code", "") in DECLINED
                continue
            fields, version = item.fields, item.version
            if fields.get(APPLIED):
                scan.chosen += 1
                scan.choices.update(fields[APPLIED])
            if version is None:
                continue
        else:
            fields = dict(row.fields or {})
            version = plan.version_of(fields)[3]
        scan.versions[version.digest] = scan.versions.get(version.digest, 0) + 1
        modules = tuple(c.module.source for s in version.selection.slots for c in s.chosen
                        if c.module.source in printed.modules)
        key = (version.locale, modules)
        groups = places.get(key)
        if groups is None:
            groups = places[key] = printed.groups(version.locale, modules, provided)
        _count_prints(scan, groups, fields)
        if version.digest in rendered:
            continue
        rendered.add(version.digest)
        if pipeline is not None:
            pipeline.sign_links(item)  # only the customers preflight renders need one
        _render_first(plan, scan, version, fields, row)
    return scan


def _provided(plan: Plan, pipeline: Any) -> set[str]:
    """The fields every customer has when rendered, whatever the customer file holds."""
    # every row has an id, a locale and interests (the reader sees to it); the pipeline
    # adds the unsubscribe link to every customer's fields just before rendering
    links = pipeline is None or pipeline.encoder.links is not None
    unsubscribes = links and (pipeline is None or pipeline.encoder.links.unsubscribes)
    provided = {"id", "locale", "interests"} | ({"unsubscribe_url"} if unsubscribes else set())
    if links and getattr(plan.campaign, "preferences", None) is not None:
        provided.add("preferences_url")
    return provided


def _render_first(plan: Plan, scan: Scan, version: Version, fields: Mapping[str, Any],
                  row: Row) -> None:
    """Render a version for its first customer; note its failure, or its html and
    PDF problems."""
    try:
        # render, not whole: the version's shared documents are made and self-checked
        # here, once, and the run that follows (in this process) reuses them
        with watchdog.limit(plan.campaign.limits.render_seconds):
            rendered_doc = plan.renderer.render(version, fields)
    except RenderFailure as exc:
        unknown = unknown_name(plan, exc)
        if unknown is not None:
            scan.errors.append((f"{exc.location}:{exc.message}", unknown,
                                exc.file or plan.campaign.file, exc.line))
        elif exc.code in CONTENT_CODES:
            scan.errors.append((
                f"{exc.location}:{exc.message}",
                f"{exc.message} (version {version.id}, first rendered for customer "
                f"{row.customer_id})", exc.file or plan.campaign.file, exc.line))
        else:
            scan.customers.append(
                (version.digest, f"customer {row.customer_id} (line {row.line}): {exc}"))
        return
    if rendered_doc.html is not None:
        for warning in mail_program_problems(plan, rendered_doc.html, fields):
            scan.html.setdefault(warning, []).append(version.id)
    if rendered_doc.page is not None and "pdf" in plan.formats:
        modules = [c.module for s in version.selection.slots for c in s.chosen]
        for problem in page_problems(plan.campaign, modules, rendered_doc.page):
            scan.errors.append((str(problem), problem.message, problem.file, problem.line))


UNDEFINED_NAME = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)' is undefined")
# what a template sees besides its slots and the environment's globals (design.md)
CONTEXT_NAMES = ("customer", "segments", "campaign", "locale", "run")


def unknown_name(plan: Plan, exc: RenderFailure) -> str | None:
    """The message when a render failed on a name no template context holds (`{{ articles }}`
    in a campaign whose slot is `picks`): not one customer's missing data but the
    template's, failing every customer alike, so an error before anything is written.
    A name the template sets anywhere (`{% set %}`, a loop, a macro, an import) may be
    unset only for some customers: that stays a per-customer failure."""
    match = UNDEFINED_NAME.fullmatch(exc.message) if exc.code == "missing_field" else None
    if match is None or not exc.file:
        return None
    name = match.group(1)
    env = plan.renderer.env
    source = (_template_source(env, exc.file.removeprefix("templates/"))
              if exc.file.startswith("templates/")
              else next((m.body for m in plan.catalog if m.source == exc.file), ""))
    try:
        tree = env.parse(source)
    except TemplateError:
        return None
    if not source or name in _stored_names(tree):
        return None
    slot_names = [slot.name for slot in plan.campaign.slots]
    hint = closest(name, {*CONTEXT_NAMES, *slot_names, *env.globals})
    slots = ", ".join(slot_names) or "none"
    return (f"prints {name!r}, which is not a name templates see (slots: {slots}; "
            f"also customer, segments, campaign, locale, run)"
            + (f" (did you mean {hint!r}?)" if hint else ""))


def _stored_names(tree: nodes.Template) -> set[str]:
    """Every name a template sets somewhere: set, loops, macros and their parameters,
    imports."""
    found = {n.name for n in tree.find_all(nodes.Name)
             if isinstance(n, nodes.Name) and n.ctx in ("store", "param")}
    for node in tree.find_all((nodes.Macro, nodes.Import, nodes.FromImport)):
        if isinstance(node, nodes.Macro):
            found.add(node.name)
        elif isinstance(node, nodes.Import):
            found.add(node.target)
        elif isinstance(node, nodes.FromImport):
            found |= {n if isinstance(n, str) else n[1] for n in node.names}
    return found


def absorb(found: Preflight, scans: Iterable[Scan]) -> None:
    """Add scans up, in input order: the same tally as one pass over every row (a
    version two workers both rendered first is reported once)."""
    seen_errors: set[str] = set()
    warned: set[str] = set()
    html: dict[str, list[str]] = {}   # warning -> versions it is about
    for scan in scans:
        found.rows += scan.rows
        found.rejected += scan.rejected
        found.excluded += scan.excluded
        found.suppressed += scan.suppressed
        found.reasons.update(scan.reasons)
        found.chosen += scan.chosen
        found.choices.update(scan.choices)
        found.declined += scan.declined
        for vid, n in scan.versions.items():
            found.versions[vid] = found.versions.get(vid, 0) + n
        for key, message, file, line in scan.errors:
            if key not in seen_errors:
                seen_errors.add(key)
                found.errors.append(ContentError(message, file, line))
        found.reached.update(scan.reached)
        found.lacking.update(scan.lacking)
        for vid, warning in scan.customers:
            if vid not in warned:
                warned.add(vid)
                found.warnings.append(warning)
        for warning, versions in scan.html.items():
            known = html.setdefault(warning, [])
            known += [v for v in versions if v not in known]
    for warning, versions in html.items():
        shown = ", ".join(versions[:3]) + (f" and {len(versions) - 3:,} more"
                                           if len(versions) > 3 else "")
        found.warnings.append(f"{len(versions):,} version(s) ({shown}): {warning}")


def _required_columns(found: Preflight, header: list[str], *, email: bool, file: str) -> None:
    if not header:
        return
    if "id" not in header and _workbook(file):
        found.errors.append(ContentError(
            "the customer file is a spreadsheet workbook (Excel or OpenDocument), not "
            "CSV: save the sheet as CSV UTF-8 and give that file", file))
    elif "id" not in header:
        hint = closest("id", header)
        found.errors.append(ContentError(
            "the customer file has no id column" + (f" (did you mean {hint!r}?)" if hint
                                                     else ""), file))
    if email and "email" not in header:
        hint = closest("email", header)
        found.errors.append(ContentError(
            "the customer file has no email column, and the run makes e-mail"
            + (f" (did you mean {hint!r}?)" if hint else ""), file))


# a workbook's first bytes: .xlsx/.ods are ZIP files, .xls an OLE compound document
WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


def _workbook(file: str) -> bool:
    """Is this customer "file" a spreadsheet saved as a workbook rather than CSV?"""
    if "://" in file:
        return False
    try:
        with open(file, "rb") as handle:
            return handle.read(8).startswith(WORKBOOK_MAGIC)
    except OSError:
        return False


def _count_prints(scan: Scan, groups: list[tuple[tuple[str, int, str], list[Print]]],
                  fields: Mapping[str, Any]) -> None:
    """One customer: for each printed field, do they get there, and do they lack it?"""
    for place, at in groups:
        if place[2] in fields:   # the common case: nothing to evaluate
            if any(p.reaches(fields) for p in at):
                scan.reached[place] += 1
        elif any(p.reaches(fields) for p in at):
            scan.reached[place] += 1
            scan.lacking[place] += 1


def _printed_fields(found: Preflight, header: list[str]) -> set[str]:
    """Errors and warnings from the counts; the fields they are about."""
    told = set()
    for place, lacking in sorted(found.lacking.items()):
        file, line, name = place
        reached = found.reached[place]
        told.add(name)
        hint = closest(name, header) if name not in header else None
        mean = f" (did you mean {hint!r}?)" if hint else ""
        if name in MADE_BY_THE_RUN:
            mean = f" ({MADE_BY_THE_RUN[name]})"
        if lacking == reached:
            found.errors.append(ContentError(
                f"prints customer.{name}, which none of the {reached:,} customer(s) who get "
                f"here has{mean}: every one of them would fail. Check the column name, or "
                f"give it a fallback: {{{{ customer.{name} | default('…') }}}}", file, line))
        else:
            found.warnings.append(
                f"{file}:{line}: prints customer.{name}, which {lacking:,} of {reached:,} "
                f"customer(s) who get here lack: they will fail; give it a "
                f"fallback (| default('…')) or test it first ({{% if customer.{name} %}})")
    return told


class Printed:
    """Where a campaign's templates, subjects and module bodies print customer fields."""

    def __init__(self, plan: Plan):
        campaign = plan.campaign
        env = plan.renderer.env
        self.campaign = campaign
        kinds = set(plan.renderer.kinds)

        def load(name: str) -> tuple[nodes.Template, str] | None:
            try:
                source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
                return env.parse(source), f"templates/{name}"
            except (TemplateError, OSError):
                return None  # the template's own check reports it

        self.pages: list[Print] = []
        names = ([campaign.template] if kinds & {"html", "page"} else []) + (
            [campaign.text_template] if "text" in kinds else [])
        for name in filter(None, names):
            loaded = load(name)
            if loaded is not None:
                self.pages += prints(loaded[0], loaded[1], load=load)
        self.subjects: dict[str, list[Print]] = {}
        if "subject" in kinds and campaign.subject:
            lines = _subject_lines(campaign)
            texts = campaign.subject.items() if isinstance(campaign.subject, dict) else [
                ("", campaign.subject)]
            for locale, text in texts:
                try:
                    tree = env.parse(text)
                except TemplateError:
                    continue
                self.subjects[text] = prints(tree, campaign.file,
                                             first_line=lines.get(locale, 1))
        self.modules: dict[str, list[Print]] = {}
        for module in plan.catalog:
            if not module.personal:
                continue
            try:
                tree = env.parse(module.body)
            except TemplateError:
                continue
            found = prints(tree, module.source, first_line=module.body_line)
            if found:
                self.modules[module.source] = found

    def groups(self, locale: str, modules: tuple[str, ...], provided: set[str]
               ) -> list[tuple[tuple[str, int, str], list[Print]]]:
        """The places a customer of this locale with these modules may fail at."""
        subject = by_locale(self.campaign.subject, locale) or ""
        grouped: dict[tuple[str, int, str], list[Print]] = {}
        for found in [*self.pages, *self.subjects.get(subject, []),
                      *(p for source in modules for p in self.modules[source])]:
            if found.field not in provided:
                grouped.setdefault((found.file, found.line, found.field), []).append(found)
        return list(grouped.items())


_PRINTED: weakref.WeakKeyDictionary[Plan, Printed] = weakref.WeakKeyDictionary()


def printed_by(plan: Plan) -> Printed:
    """The analysis for a plan, made once per process."""
    found = _PRINTED.get(plan)
    if found is None:
        found = _PRINTED[plan] = Printed(plan)
    return found


def _subject_lines(campaign: Any) -> dict[str, int]:
    """The campaign file's line of `subject` ("" key) and of each `subject.<locale>`."""
    try:
        data = load_yaml((campaign.root / campaign.file).read_text(encoding="utf-8"),
                         campaign.file)
    except (OSError, UnicodeDecodeError, ContentError):
        return {}
    if not isinstance(data, dict) or "subject" not in data:
        return {}
    lines = {"": line_of(data, ["subject"])}
    if isinstance(data["subject"], dict):
        lines |= {str(k): line_of(data, ["subject", k]) for k in data["subject"]}
    return lines


def _fields_read(plan: Plan, header: list[str]) -> dict[str, str]:
    """Customer fields that rules and templates read but no column of the file holds:
    field -> warning."""
    found: dict[str, str] = {}
    if not header:
        return found
    campaign = plan.campaign
    env = plan.renderer.env
    known = set(header) | ENGINE_FIELDS
    reads: dict[str, str] = {}
    rules = [(s.name, s.expression) for s in campaign.segments]
    for rule in (campaign.audience, campaign.exclude):
        if rule is not None and rule.rule is not None:
            rules.append((rule.key, rule.rule.expression))
    for name, expression in rules:
        tree = env.parse("{{ " + expression + " }}")
        names = meta.find_undeclared_variables(tree) - set(env.globals) - {"customer"}
        for field_name in names | _customer_reads(tree):
            reads.setdefault(field_name, f"{campaign.file}: segment {name!r}")
    sources = [(f"templates/{t}", _template_source(env, t))
               for t in filter(None, [campaign.template, campaign.text_template])]
    subjects = campaign.subject.values() if isinstance(campaign.subject, dict) else [
        campaign.subject]
    sources += [(f"{campaign.file}: subject", s) for s in subjects]
    sources += [(m.source, m.body) for m in plan.catalog if m.personal]
    for where, source in sources:
        try:
            tree = env.parse(source)
        except Exception:  # its own check reports it
            continue
        for field_name in _customer_reads(tree):
            reads.setdefault(field_name, where)
    for field_name, where in sorted(reads.items()):
        if field_name in known:
            continue
        hint = closest(field_name, header)
        found[field_name] = (f"{where} reads {field_name!r}, which the customer file has no "
                             f"column for" + (f" (did you mean {hint!r}?)" if hint else ""))
    return found


def _template_source(env: Environment, name: str) -> str:
    if env.loader is None:
        return ""
    try:
        return env.loader.get_source(env, name)[0]
    except Exception:
        return ""


def _customer_reads(tree: nodes.Node) -> set[str]:
    found = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, (nodes.Getattr, nodes.Getitem))   # find_all's own filter
        if isinstance(node.node, nodes.Name) and node.node.name == "customer":
            if isinstance(node, nodes.Getattr):
                found.add(node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                found.add(node.arg.value)
    return found
