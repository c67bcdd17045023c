"""Replayable runs: the same run made again, compared byte for byte.

run.json's `replay` block (edition.run.digests) says what a run was made of. `replay`
renders the run again into another folder from its recorded options (the same run
date, clock, mailing and formats) and compares every file the run wrote, byte for
byte, with the volatile e-mail headers masked as the golden tests mask them (Date,
Message-ID); it names the files that differ and what changed since (an edited module,
a new template, other customers, new code).

Who the cadence held back (holdout, frequency cap, send window) was decided from that
day's send history: the replay takes the run's own decisions from its manifest instead
of today's history, so a replay is never "different" because the house sent more mail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edition.errors import RunError, UsageError
from edition.run.digests import changes, record
from edition.run.folder import RUN_FILE, read_run_file
from edition.run.manifest import MANIFEST_NAME, read_rows

CADENCE_CODES = {"holdout", "frequency_cap", "frequency_preference", "deferred"}
VOLATILE = re.compile(rb"^(Date|Message-ID): .*$", re.M)
REPLAY_FILE = "replay.json"


def masked(name: str, data: bytes) -> bytes:
    return VOLATILE.sub(rb"\1: <masked>", data) if name.endswith(".eml") else data


@dataclass
class Replay:
    """What a replay found."""

    run_dir: str
    out_dir: str
    files: int = 0                                   # files compared
    identical: int = 0
    differing: list[str] = field(default_factory=list)   # "html/c1-….html differs" …
    changed: list[str] = field(default_factory=list)     # what changed since, in words
    unrecorded: bool = False                         # the run predates replay records

    @property
    def byte_identical(self) -> bool:
        return not self.differing

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run_dir, "out": self.out_dir, "files": self.files,
                "identical": self.identical, "byte_identical": self.byte_identical,
                "differing": self.differing, "changed_since": self.changed}


def replay(run_dir: Path | str, out: Path | str) -> Replay:
    """Render the run in `run_dir` again into `out` and compare (see the module)."""
    from edition.audience.customers import batches, read_customers
    from edition.audience.suppression import Suppression
    from edition.render.encoding import Encoder
    from edition.run import context, workers
    from edition.run.folder import open_writer
    from edition.run.options import RunOptions
    from edition.run.pipeline import Pipeline

    run_dir, out = Path(run_dir), Path(out)
    info = read_run_file(run_dir)
    if not info or not (run_dir / MANIFEST_NAME).is_file():
        raise UsageError(f"{run_dir} is not a run folder (no {RUN_FILE} and manifest)")
    if info.get("status") != "finished":
        raise UsageError(f"{run_dir}: the run is {info.get('status')!r}, not finished; "
                         f"only a finished run can be replayed")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out} is not empty: a replay writes into a new folder")
    if out.resolve() == run_dir.resolve() or run_dir.resolve() in out.resolve().parents:
        raise UsageError("--out must be a folder outside the run's (the run folder is "
                         "left as it is)")
    recorded = info.get("replay") or {}
    try:
        options = RunOptions.model_validate(info.get("options") or {})
    except ValueError as exc:
        raise RunError(f"{run_dir}/{RUN_FILE}: the run's options cannot be read ({exc})"
                       ) from None
    customers = (recorded.get("customers") or {}).get("path")
    options = options.replace(send=False, resend_unknown=False, new_mailing=False,
                              out=str(out), customers=customers or options.customers,
                              suppression=tuple(p for p in options.suppression
                                                if Path(p).is_file()))
    plan = workers.plan_for(options)
    source = context.customers_file(options, plan.campaign)
    result = Replay(str(run_dir), str(out), unrecorded=not recorded)
    now = record(options, plan, source)["replay"]
    result.changed = changes(recorded, now) if recorded else [
        "the run recorded no digests (made before replayable runs): what changed is unknown"]

    # cadence off: the run's own decisions (from its manifest) stand in for today's history
    if options.started is None:   # every run records it; a hand-edited run.json may not
        raise RunError(f"{run_dir}/{RUN_FILE}: the run's options name no start time")
    encoder = Encoder(plan.campaign, plan.formats, options.started,
                                links=workers.unsubscribe_links(options, plan),
                                mailing=options.mailing)
    suppression = Suppression.load(plan.campaign, extra_lists=options.suppression)
    pipeline = Pipeline(plan, open_writer(out), encoder, None, suppression)
    made: dict[str, dict[str, Any]] = {}
    try:
        rows = read_customers(source, need_email=context.need_email(options, plan),
                              declared=plan.campaign.fields, limit=options.limit)
        for batch in batches(rows, options.batch_size):
            for row in pipeline.process(batch).rows:
                made[str(row.customer_id)] = row.to_dict()
    finally:
        pipeline.close()
    original, _ = read_rows(run_dir / MANIFEST_NAME)
    _compare(result, original, made, run_dir, out)
    (out / REPLAY_FILE).write_text(json.dumps(result.as_dict(), indent=2, ensure_ascii=False)
                                   + "\n", encoding="utf-8")
    return result


def _compare(result: Replay, original: Iterable[Mapping[str, Any]],
             made: Mapping[str, Mapping[str, Any]], run_dir: Path, out: Path) -> None:
    for row in original:
        cid = str(row.get("customer_id"))
        files = dict(row.get("files") or {})
        again = made.get(cid)
        if again is None:
            result.differing.append(f"customer {cid}: not in the customer data any more")
            continue
        if not files:
            if again.get("files") and row.get("reason_code") not in CADENCE_CODES:
                result.differing.append(f"customer {cid}: was {row.get('status')} "
                                        f"({row.get('reason')}), now rendered")
            continue
        if not again.get("files"):
            result.differing.append(f"customer {cid}: was rendered, now {again.get('status')}"
                                    f" ({again.get('reason')})")
            continue
        for fmt, rel in sorted(files.items()):
            result.files += 1
            other = (again.get("files") or {}).get(fmt)
            before, after = run_dir / rel, out / str(other)
            if other is None or not after.is_file():
                result.differing.append(f"{rel}: not made again")
            elif not before.is_file():
                result.differing.append(f"{rel}: missing from the run folder")
            elif masked(rel, before.read_bytes()) != masked(rel, after.read_bytes()):
                result.differing.append(f"{rel} differs")
            else:
                result.identical += 1
