"""Runs that survive restarts: a run folder is made consistent after its run died.

`send-campaign` writes `run.json` into its run folder before the first batch: the run's
options, who runs it (host, pid and the pid's start time) and `"status": "running"`.
Files are written atomically and the manifest is flushed per batch, so a run killed at
any moment (serve restarted, machine rebooted, out of memory) leaves a manifest that is
a prefix of the input plus, at most, the customer files of the batches that were
rendered but not yet collected.

`repair` turns such a folder into a consistent one:

- a torn last manifest line is cut off;
- customer files that no manifest row names are removed, and so are temp files;
- every input row the manifest does not cover gets a row — `"status": "failed",
  "reason": "run interrupted"`; when the run was sending, a customer whose batch had
  been rendered gets `"unknown"` instead (the provider may have the message: the send
  ledger decides on the rerun); rows the reader rejects keep `rejected` with its reason —
  so the manifest again has one row per customer, in input order;
- report.md and versions.json are written, with a note that the run was interrupted;
- run.json says `"status": "interrupted"`, and the Prefect flow run, if it is still
  shown as running, is set to Crashed with a message saying what was repaired.

`recover_runs` finds the folders whose run is no longer alive (`edition serve` calls it
at start-up for every campaign, and `send-campaign` before each run), so restarting
serve is enough. A folder whose owner runs on another host is left alone unless the
Prefect API says its flow run is over.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edition.output import EXTENSIONS

RUN_FILE = "run.json"
INTERRUPTED = "run interrupted"
logger = logging.getLogger("prefect.edition.recovery")


# -- who owns a run folder ---------------------------------------------------------

def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell reused pids."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def owner() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _start_ticks(pid)}


def _alive_here(info: dict[str, Any]) -> bool | None:
    """True/False when the owner ran on this host; None when we cannot tell."""
    if info.get("host") != socket.gethostname() or not info.get("pid"):
        return None
    pid = int(info["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = _start_ticks(pid)
    recorded = info.get("pid_start")
    # a different start time: the pid was reused by another process
    return start is None or recorded is None or start == recorded


def options_document(options: Any) -> dict[str, Any]:
    """RunOptions as JSON (dates as ISO strings)."""
    doc = dataclasses.asdict(options)
    for key, value in doc.items():
        if isinstance(value, dt.date | dt.datetime):
            doc[key] = value.isoformat()
        elif isinstance(value, tuple):
            doc[key] = list(value)
    return doc


def options_from(doc: dict[str, Any]) -> Any:
    from edition.run import RunOptions

    values = dict(doc)
    if values.get("as_of"):
        values["as_of"] = dt.date.fromisoformat(values["as_of"])
    if values.get("started"):
        values["started"] = dt.datetime.fromisoformat(values["started"])
    if values.get("formats"):
        values["formats"] = tuple(values["formats"])
    known = {f.name for f in dataclasses.fields(RunOptions)}
    return RunOptions(**{k: v for k, v in values.items() if k in known})


def write_run_file(folder: Path, document: dict[str, Any]) -> None:
    """run.json, atomically."""
    temp = folder / f".{RUN_FILE}.{os.getpid()}.tmp"
    temp.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n",
                    encoding="utf-8")
    os.replace(temp, folder / RUN_FILE)


def read_run_file(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def mark_running(folder: Path, options: Any, *, flow_run_id: str | None,
                 api_url: str | None) -> dict[str, Any]:
    document = {"status": "running", "options": options_document(options),
                "flow_run_id": flow_run_id, "api_url": api_url,
                "started": dt.datetime.now(dt.UTC).isoformat(), **owner()}
    write_run_file(folder, document)
    return document


def mark_finished(folder: Path, document: dict[str, Any], summary: Any) -> None:
    write_run_file(folder, document | {
        "status": "finished", "finished": dt.datetime.now(dt.UTC).isoformat(),
        "customers": summary.customers, "counts": summary.counts})


# -- repair ------------------------------------------------------------------------

@dataclass
class Repair:
    """What `repair` did to one run folder."""

    folder: str
    kept: int = 0                       # manifest rows that were there
    added: Counter = field(default_factory=Counter)   # status -> rows added
    removed: list[str] = field(default_factory=list)  # files no row named
    torn_line: bool = False
    note: str = ""

    def describe(self) -> str:
        added = ", ".join(f"{n:,} {s}" for s, n in sorted(self.added.items())) or "none"
        return (f"{self.folder}: {self.kept:,} manifest rows kept, rows added: {added}, "
                f"{len(self.removed):,} unlisted file(s) removed"
                + (", torn last manifest line cut" if self.torn_line else "")
                + (f" ({self.note})" if self.note else ""))


def _read_manifest(path: Path, result: Repair) -> list[dict[str, Any]]:
    """The complete rows; a torn last line (killed mid-write) is cut off the file."""
    if not path.exists():
        path.write_text("", encoding="utf-8")
        return []
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    good = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
        good += len(line)
    if good != len(data):
        result.torn_line = True
        with path.open("r+b") as handle:
            handle.truncate(good)
    return rows


def _customer_files(folder: Path) -> Iterator[tuple[str, Path]]:
    for fmt in EXTENSIONS:
        sub = folder / fmt
        if sub.is_dir():
            for path in sub.iterdir():
                yield f"{fmt}/{path.name}", path


def _was_rendered(customer_id: str, formats: tuple[str, ...], removed: set[str]) -> bool:
    from edition.output import relative_path

    return any(relative_path(fmt, customer_id) in removed for fmt in formats)


def repair(folder: Path | str, *, reason: str = INTERRUPTED) -> Repair:
    """Make an interrupted run folder consistent (see the module docstring)."""
    from edition.report import Tally, write_report
    from edition.run import BatchResult, Plan

    folder = Path(folder)
    result = Repair(str(folder))
    info = read_run_file(folder) or {}
    manifest = folder / "manifest.jsonl"
    rows = _read_manifest(manifest, result)
    result.kept = len(rows)
    named = {rel for row in rows for rel in (row.get("files") or {}).values()}
    for rel, path in _customer_files(folder):
        if path.name.endswith(".tmp") or rel not in named:
            path.unlink(missing_ok=True)
            result.removed.append(rel)
    removed = set(result.removed)

    plan = None
    try:
        options = options_from(info["options"])
        plan = Plan.load(options)
    except Exception as exc:  # campaign edited or broken since: account for what we can
        result.note = f"rows not completed: cannot read the campaign ({exc})"
    added: list[dict[str, Any]] = []
    locales: dict[int, str] = {}
    if plan is not None:
        last_line = max((int(r.get("line") or 0) for r in rows), default=0)
        sending = bool(plan.options.send)
        try:
            for row in plan.rows():
                if row.line <= last_line:
                    locales[row.line] = str((row.fields or {}).get("locale", "en"))
                    continue
                if row.rejected:
                    status, why = "rejected", row.reason
                elif sending and _was_rendered(str(row.customer_id), plan.formats, removed):
                    # its batch ran, so it may have been delivered: the ledger knows
                    status, why = "unknown", f"{reason}; delivery outcome not recorded"
                else:
                    status, why = "failed", reason
                added.append({"customer_id": row.customer_id, "version": None, "segments": [],
                              "modules": {}, "status": status, "reason": why, "files": {},
                              "line": row.line})
                result.added[status] += 1
        except Exception as exc:
            result.note = f"customer file unreadable ({exc}); manifest left as it was"
            added = []
            result.added.clear()
    if added:
        with manifest.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n"
                                 for r in added))
            handle.flush()
            os.fsync(handle.fileno())

    if plan is not None:
        versions = {}
        for row in rows:
            if row.get("version") and row["version"] not in versions:
                versions[row["version"]] = {"modules": row.get("modules") or {},
                                            "segments": row.get("segments") or [],
                                            "locale": locales.get(int(row.get("line") or 0))}
        tally = Tally(plan)
        tally.add(BatchResult(rows=rows + added, versions=versions))
        seconds = _seconds(info, manifest)
        write_report(plan, tally, folder, seconds)
        report = folder / "report.md"
        text = report.read_text(encoding="utf-8")
        title, _, rest = text.partition("\n")
        note = (f"> **{reason.capitalize()}.** {result.kept:,} customer rows were done before "
                f"the run stopped; the other {sum(result.added.values()):,} are listed with "
                f"reason \"{reason}\". Run the campaign again to produce them.")
        report.write_text(f"{title}\n\n{note}\n{rest}", encoding="utf-8")

    write_run_file(folder, info | {
        "status": "interrupted", "reason": reason,
        "repaired": dt.datetime.now(dt.UTC).isoformat(), "repair": result.describe()})
    return result


def _seconds(info: dict[str, Any], manifest: Path) -> float:
    try:
        started = dt.datetime.fromisoformat(info["started"])
        ended = dt.datetime.fromtimestamp(manifest.stat().st_mtime, dt.UTC)
        return max(0.0, (ended - started).total_seconds())
    except (KeyError, ValueError, OSError):
        return 0.0


# -- finding dead runs -------------------------------------------------------------

def _flow_run_state(flow_run_id: str) -> str | None:
    """The flow run's state type from the Prefect API, or None if unknown."""
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
        return run.state.type.value if run.state else None
    except Exception:
        return None


def _crash_flow_run(flow_run_id: str, message: str) -> bool:
    """Set a flow run still shown as running/pending to Crashed."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return False
            client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)
        return True
    except Exception as exc:
        logger.warning("could not mark flow run %s as crashed: %s", flow_run_id, exc)
        return False


def is_dead(info: dict[str, Any]) -> bool:
    """Whether the run that owns a folder marked running is gone."""
    alive = _alive_here(info)
    if alive is not None:
        return not alive
    flow_run_id = info.get("flow_run_id")
    if flow_run_id:  # another host: trust the API only when it says the run is over
        state = _flow_run_state(flow_run_id)
        return state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    return False


def recover_runs(campaign_out: Path | str, *, skip: Path | None = None) -> list[Repair]:
    """Repair every run folder under `out/<campaign>/` whose run died mid-way."""
    campaign_out = Path(campaign_out)
    repaired: list[Repair] = []
    if not campaign_out.is_dir():
        return repaired
    for folder in sorted(p for p in campaign_out.iterdir() if p.is_dir()):
        if skip is not None and folder.resolve() == skip.resolve():
            continue
        info = read_run_file(folder)
        if not info or info.get("status") != "running" or not is_dead(info):
            continue
        try:
            result = repair(folder)
        except Exception as exc:  # never let one folder stop serve or a run
            logger.error("could not repair interrupted run %s: %s", folder, exc)
            continue
        if info.get("flow_run_id"):
            _crash_flow_run(info["flow_run_id"], f"Run interrupted (its process is gone); "
                            f"output made consistent: {result.describe()}")
        repaired.append(result)
    return repaired


# -- edition serve: one per content root, and the flow runs it left behind ---------

SERVE_FILE = ".edition-serve.json"


class ServeLockError(RuntimeError):
    """Another `edition serve` is running for the same content root."""


def claim_serve(out_root: Path, api_url: str | None) -> dict[str, Any] | None:
    """Record this serve process in out/.edition-serve.json; return the previous record.

    Raises ServeLockError when the previous serve is still running on this host: two
    serve processes for one root would each take the other's runs for dead ones.
    """
    out_root.mkdir(parents=True, exist_ok=True)
    previous = read_run_file_named(out_root / SERVE_FILE)
    if previous and previous.get("pid") != os.getpid() and _alive_here(previous):
        raise ServeLockError(
            f"edition serve is already running for this folder (pid {previous['pid']} on "
            f"{previous.get('host')}); stop it first")
    document = {"api_url": api_url, "started": dt.datetime.now(dt.UTC).isoformat(),
                **owner()}
    temp = out_root / f".{SERVE_FILE}.{os.getpid()}.tmp"
    temp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(temp, out_root / SERVE_FILE)
    return previous


def read_run_file_named(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _live_flow_runs(out_root: Path) -> set[str]:
    """Flow run ids whose run folder says running and whose process is alive here."""
    live: set[str] = set()
    if not out_root.is_dir():
        return live
    for info_path in out_root.glob(f"*/*/{RUN_FILE}"):
        info = read_run_file_named(info_path)
        if info and info.get("status") == "running" and info.get("flow_run_id") \
                and _alive_here(info):
            live.add(str(info["flow_run_id"]))
    return live


@dataclass
class Orphans:
    """Flow runs a stopped serve left in Pending or Running."""

    rescheduled: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)


def recover_flow_runs(deployment_names: list[str], out_root: Path) -> Orphans:
    """Fix the Prefect state of runs the previous serve process left behind.

    Call it only when no other serve for these deployments is alive (`claim_serve`).
    A run still Pending never started its flow: it goes back to Scheduled (now), so
    this serve runs it. A run still Running whose process is gone is set to Crashed
    (its run folder, if it has one, has been repaired by `recover_runs`). Both release
    the deployment's concurrency slot, which would otherwise stay taken until the
    server's lease expires.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed, Scheduled

    result = Orphans()
    live = _live_flow_runs(out_root)
    with get_client(sync_client=True) as client:
        ids = []
        for name in deployment_names:
            try:
                ids.append(client.read_deployment_by_name(name).id)
            except Exception:  # not registered yet: nothing can be left behind
                continue
        if not ids:
            return result
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=ids),
            state=FlowRunFilterState(type=FlowRunFilterStateType(
                any_=[StateType.PENDING, StateType.RUNNING]))), limit=200)
        for run in runs:
            if str(run.id) in live:
                continue
            if run.state and run.state.type == StateType.PENDING:
                client.set_flow_run_state(run.id, Scheduled(
                    message="edition serve stopped before this run started; resubmitted"),
                    force=True)
                result.rescheduled.append(run.name)
            else:
                client.set_flow_run_state(run.id, Crashed(
                    message="Run interrupted: the process running it is gone "
                            "(edition serve or the machine stopped mid-run)"), force=True)
                result.crashed.append(run.name)
    return result


def release_serve(out_root: Path) -> None:
    """Remove out/.edition-serve.json if it is this process's."""
    path = out_root / SERVE_FILE
    info = read_run_file_named(path)
    if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)
