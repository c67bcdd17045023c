"""Campaigns in the Prefect UI, with the real parts on loopback.

One `prefect server` and one `edition serve` per module (temporary PREFECT_HOME, a copy
of the sample content with 200 generated customers), in production shape: the server
asks for a password (PREFECT_SERVER_API_AUTH_STRING; the clients send it with
PREFECT_API_AUTH_STRING, the browser logs in on the UI's login page) and keeps its state
in the session's throwaway PostgreSQL. Then:

- the API refuses requests without the password, and `edition serve` without it, or
  with a wrong one, stops with a message saying what to set;

- every valid campaign is a deployment of send-campaign (fixed campaign file, at most
  one run at a time), plus preview-customer; an invalid campaign is reported with
  file:line in serve's log and skipped;
- schedules (cron + time zone) read back through the API;
- weekly-newsletter run once through the REST API and once from the UI in headless
  Chromium (Run → Quick run): both complete, one after the other, with their artifacts
  and a manifest row per customer; screenshots of the deployment page, the run form
  and the finished run's Artifacts tab;
- weekly-newsletter and invoice started at the same moment run at the same time, each
  to its complete manifest;
- bad parameters are refused before any work;
- the preview deployment selects what `edition preview` selects;
- serve killed mid-run and restarted: the run folder is consistent, the flow run is
  Crashed, and an added and an edited campaign file are picked up;
- `edition serve --work-pool` registers the deployments with a process work pool and a
  `prefect worker` runs them, confined like serve's own runs.

Screenshots go to a temporary folder; with EDITION_SCREENSHOTS=1 they are (re)written
to docs/img/ in the repository.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# generous: these hold on a loaded 2-core machine (poll with deadlines of minutes)
pytestmark = [pytest.mark.ui, pytest.mark.soak, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
CONTENT = ("campaigns", "templates", "articles", "offers", "greetings")
CUSTOMERS = 200
BIG = 3000
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5,
             log: Path | None = None) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        time.sleep(every)


def stop(proc: subprocess.Popen | None, grace: float = 15.0) -> None:
    """Terminate a process group we started; kill it if it does not go in time."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def basic(auth: str) -> dict[str, str]:
    """The header Prefect's clients send for PREFECT_API_AUTH_STRING."""
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def csv_ids(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [row["id"] for row in csv.DictReader(handle)]


@dataclass
class Stack:
    """The server, serve, and the content root they work on."""

    root: Path
    home: Path
    api: str
    ui: str
    env: dict[str, str]
    server: subprocess.Popen | None = None
    serve: subprocess.Popen | None = None
    serve_logs: list[Path] = field(default_factory=list)
    shots: Path = Path()
    auth: str | None = None   # user:password the server asks for (None: no password)
    database: str = ""        # the server's PostgreSQL database (psycopg URL)

    # -- processes ------------------------------------------------------------------

    def start_serve(self) -> None:
        log = self.home / f"serve-{len(self.serve_logs) + 1}.log"
        self.serve_logs.append(log)
        with log.open("wb") as out:
            self.serve = subprocess.Popen(
                [sys.executable, "-m", "cli", "serve", "--root", str(self.root)],
                cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def serve_log(self) -> Path:
        return self.serve_logs[-1]

    # -- the REST API ----------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        import httpx

        response = httpx.request(method, self.api + path, json=body, timeout=15,
                                 headers=basic(self.auth) if self.auth else None)
        try:
            data = response.json()
        except ValueError:
            data = response.text
        return response.status_code, data

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        # A loaded server answers 503 when its database is busy (the request rolled back);
        # Prefect's own client retries 429/502/503, so does this one, a bounded number of
        # times (a CI run on two shared cores met it once on create_flow_run)
        for attempt in range(6):
            status, data = self.call(method, path, body)
            if status not in (429, 502, 503):
                break
            time.sleep(1 + attempt)
        assert status < 300, f"{method} {path}: {status} {data}"
        return data

    def deployments(self) -> dict[str, dict[str, Any]]:
        return {d["name"]: d for d in self.ok("POST", "/deployments/filter", {})}

    def deployment(self, name: str) -> dict[str, Any]:
        return self.ok("GET", f"/deployments/name/{name}")

    def run_deployment(self, name: str, parameters: dict[str, Any]) -> str:
        deployment = self.deployment(name)
        run = self.ok("POST", f"/deployments/{deployment['id']}/create_flow_run",
                      {"parameters": parameters})
        return run["id"]

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return self.ok("GET", f"/flow_runs/{run_id}")

    def wait_final(self, run_id: str, timeout: float = 240,
                   log: Path | None = None) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            run = self.flow_run(run_id)
            return run if run["state"] and run["state"]["type"] in FINAL else None

        return wait_for(f"flow run {run_id} to finish", final, timeout,
                        log=log or self.serve_log)

    def run_folder(self, campaign: str, run_id: str) -> Path:
        """The one folder under out/CAMPAIGN/ that the flow run wrote."""
        folders = [p.parent for p in (self.root / "out" / campaign).glob("*/run.json")
                   if json.loads(p.read_text())["flow_run_id"] == run_id]
        assert len(folders) == 1, (campaign, run_id, folders)
        return folders[0]

    def artifacts(self, run_id: str) -> dict[str, dict[str, Any]]:
        found = self.ok("POST", "/artifacts/filter",
                        {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
        return {a["key"]: a for a in found if a.get("key")}

    def logs(self, run_id: str) -> str:
        found = self.ok("POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}},
                                                "limit": 200})
        return "\n".join(entry["message"] for entry in found)


def _campaign_variant(source: Path, target: Path, name: str, schedule: str | None) -> None:
    text = source.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^name: .*$", f"name: {name}", text)
    text = re.sub(r"(?m)^schedule: .*$", "", text)
    if schedule:
        text += f"\nschedule: {schedule}\n"
    target.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_server: Any) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("prefect-ui")
    root, home = base / "site", base / "home"
    home.mkdir()
    for folder in CONTENT:
        shutil.copytree(REPO / folder, root / folder)
    campaigns = root / "campaigns"
    _campaign_variant(campaigns / "weekly-newsletter.yaml", campaigns / "daily-digest.yaml",
                      "daily-digest", '{cron: "30 6 * * *", timezone: America/New_York}')
    broken = (campaigns / "weekly-newsletter.yaml").read_text(encoding="utf-8")
    broken = broken.replace("name: weekly-newsletter", "name: broken").replace(
        'cron: "0 8 * * MON"', 'cron: "61 8 * * MON"')
    (campaigns / "broken.yaml").write_text(broken, encoding="utf-8")

    port, output_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(home / "prefect"), "PREFECT_API_URL": api,
        "PREFECT_UI_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1", "PREFECT_LOGGING_COLOR": "false",
        # a run waiting for the deployment's one slot retries soon, and serve polls often
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "EDITION_OUTPUT_PORT": str(output_port), "COLUMNS": "200", "NO_COLOR": "1",
        # serve's worker test polls often too
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    })
    auth = f"edition:{secrets.token_urlsafe(12)}"
    database = postgres_server.create_database()
    server_env = {**env, "PREFECT_SERVER_API_AUTH_STRING": auth,
                  "PREFECT_API_DATABASE_CONNECTION_URL": database.replace(
                      "postgresql+psycopg://", "postgresql+asyncpg://", 1)}
    env["PREFECT_API_AUTH_STRING"] = auth  # every client: serve, the CLI, the workers
    for count, name in ((CUSTOMERS, "customers.csv"), (BIG, "big.csv")):
        subprocess.run([sys.executable, "-m", "cli", "sample-data", "--customers",
                        str(count), "--out", f"data/{name}", "--seed", "7"],
                       cwd=root, env=env, check=True, capture_output=True, timeout=60)
    shots = REPO / "docs" / "img" if os.environ.get("EDITION_SCREENSHOTS") == "1" \
        else base / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    stack = Stack(root=root, home=home, api=api, ui=f"http://127.0.0.1:{port}", env=env,
                  shots=shots, auth=auth, database=database)
    server_log = home / "server.log"
    try:
        with server_log.open("wb") as out:
            stack.server = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                 "--port", str(port)], cwd=home, env=server_env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

        def healthy() -> bool:
            try:
                return stack.call("GET", "/health")[0] == 200
            except Exception:
                return False

        wait_for("the Prefect server", healthy, 180, log=server_log)
        stack.start_serve()
        wait_for("the deployments", lambda: {"weekly-newsletter", "daily-digest", "invoice",
                                             "preview-customer"} <= stack.deployments().keys(),
                 180, log=stack.serve_log)
        yield stack
    finally:
        stop(stack.serve)
        stop(stack.server)


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(stack.home / "chromium-profile"), executable_path=chromium,
            args=CHROMIUM_ARGS, headless=True, viewport={"width": 1400, "height": 1000},
            timeout=60_000)
        context.set_default_timeout(90_000)
        try:
            log_in(context, stack)
            yield context
        finally:
            context.close()


def log_in(context: Any, stack: Stack) -> None:
    """Through the UI's own login page: a wrong password is refused, the right one kept
    (in the browser's local storage) for the pages the tests open next."""
    page = context.new_page()
    page.goto(f"{stack.ui}/dashboard")
    page.wait_for_url("**/login**")
    password = page.get_by_placeholder("admin:pass")
    password.fill("edition:wrong")
    page.get_by_role("button", name="Login").click()
    page.get_by_text("Authentication failed.").first.wait_for()
    password.fill(stack.auth or "")
    page.get_by_role("button", name="Login").click()
    page.wait_for_url(lambda url: "/login" not in url)
    page.get_by_text("Dashboard").first.wait_for()
    page.close()


# -- deployments -------------------------------------------------------------------------

def test_every_valid_campaign_is_a_deployment_and_the_invalid_one_is_reported(
        stack: Stack) -> None:
    deployments = stack.deployments()
    campaigns = {"weekly-newsletter", "daily-digest", "invoice", "vip-offers-es"}
    assert campaigns | {"preview-customer"} == deployments.keys()  # broken is not there
    for name in campaigns:
        deployment = deployments[name]
        assert deployment["parameters"] == {"campaign": name}
        assert deployment["global_concurrency_limit"]["limit"] == 1
        campaign = deployment["parameter_openapi_schema"]["properties"]["campaign"]
        assert campaign["readOnly"] is True and campaign["enum"] == [name]
        assert deployment["enforce_parameter_schema"] is True
        assert {"edition", "campaign", name} <= set(deployment["tags"])
    preview = deployments["preview-customer"]["parameter_openapi_schema"]["properties"]
    assert sorted(preview["campaign"]["enum"]) == sorted(campaigns)
    lines = (stack.root / "campaigns" / "broken.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "61 8 * * MON" in text)
    log = stack.serve_log.read_text(errors="replace")
    assert re.search(rf"invalid campaign skipped: campaigns/broken\.yaml:{line}: "
                     rf"schedule\.cron '61 8 \* \* MON' is not a valid cron", log), log[-3000:]


def test_schedules_read_back_with_cron_and_time_zone(stack: Stack) -> None:
    def schedules(name: str) -> list[tuple[str, str]]:
        return [(s["schedule"]["cron"], s["schedule"]["timezone"])
                for s in stack.deployment(f"send-campaign/{name}")["schedules"]]

    assert schedules("weekly-newsletter") == [("0 8 * * MON", "Europe/London")]
    assert schedules("daily-digest") == [("30 6 * * *", "America/New_York")]
    assert schedules("invoice") == []


# -- the password ------------------------------------------------------------------------

def test_the_server_wants_the_password_and_serve_says_which(stack: Stack) -> None:
    import httpx

    assert stack.auth
    for headers in ({}, basic("edition:wrong")):
        response = httpx.post(stack.api + "/deployments/filter", json={}, headers=headers,
                              timeout=15)
        assert response.status_code == 401, (headers, response.status_code, response.text)
    assert stack.call("POST", "/deployments/filter", {})[0] == 200  # with basic(auth)

    def serve_with(auth: str | None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in stack.env.items() if k != "PREFECT_API_AUTH_STRING"}
        if auth is not None:
            env["PREFECT_API_AUTH_STRING"] = auth
        return subprocess.run([sys.executable, "-m", "cli", "serve", "--root", str(stack.root)],
                              cwd=stack.home, env=env, capture_output=True, text=True,
                              timeout=180)

    with ThreadPoolExecutor(2) as pool:
        missing, wrong = pool.map(serve_with, [None, "edition:wrong"])
    said = {}
    for name, done in (("missing", missing), ("wrong", wrong)):
        output = done.stdout + done.stderr
        assert done.returncode != 0 and "Traceback" not in output, (name, output[-3000:])
        said[name] = " ".join(done.stderr.split())
    assert "asks for a password: set PREFECT_API_AUTH_STRING" in said["missing"], said
    assert "refused PREFECT_API_AUTH_STRING" in said["wrong"], said


# -- runs from the API and from the UI ---------------------------------------------------

def _check_run_output(stack: Stack, run_id: str) -> Path:
    artifacts = stack.artifacts(run_id)
    for key in ("report-weekly-newsletter", "versions-weekly-newsletter",
                "output-weekly-newsletter", "progress-weekly-newsletter"):
        assert key in artifacts, (key, sorted(artifacts))
    assert float(artifacts["progress-weekly-newsletter"]["data"]) == pytest.approx(100.0)
    assert artifacts["versions-weekly-newsletter"]["type"] == "table"
    report = artifacts["report-weekly-newsletter"]["data"]
    assert "# Run report: weekly-newsletter" in report and f"{CUSTOMERS} customer rows" in report
    link = re.search(r"\((http://127\.0\.0\.1:\d+/[^)]+)\)",
                     artifacts["output-weekly-newsletter"]["data"])
    assert link, artifacts["output-weekly-newsletter"]["data"]
    import httpx

    listing = httpx.get(link.group(1), timeout=10)
    assert listing.status_code == 200 and "manifest.jsonl" in listing.text
    folders = [p.parent for p in (stack.root / "out" / "weekly-newsletter").glob("*/run.json")
               if json.loads(p.read_text())["flow_run_id"] == run_id]
    assert len(folders) == 1
    out = folders[0]
    rows = read_rows(out / "manifest.jsonl")
    assert [r["customer_id"] for r in rows] == csv_ids(stack.root / "data" / "customers.csv")
    assert {r["status"] for r in rows} == {"rendered"}
    for row in rows:
        for rel in row["files"].values():
            assert (out / rel).is_file(), rel
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    return out


def test_runs_from_the_api_and_from_the_ui_button(stack: Stack, browser: Any) -> None:
    deployment = stack.deployment("send-campaign/weekly-newsletter")
    api_run = stack.run_deployment("send-campaign/weekly-newsletter", {})

    page = browser.new_page()
    failures: list[str] = []
    page.on("response", lambda r: failures.append(f"{r.status} {r.request.method} {r.url}")
            if r.status >= 400 else None)
    page.goto(f"{stack.ui}/deployments")
    page.get_by_role("link", name="weekly-newsletter", exact=True).first.click()
    page.wait_for_url(f"**/deployments/deployment/{deployment['id']}**")
    page.get_by_text("Concurrency Limit").wait_for()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Quick run", exact=True).click()
    # the deployment has parameters, so Quick run shows them in a form before running
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("confirm_send").first.wait_for()
    page.wait_for_timeout(800)
    page.screenshot(path=str(stack.shots / "run-form.png"))
    for attempt in range(3):  # on a busy machine the UI's first request may fail
        dialog.get_by_role("button", name="Run", exact=True).click()
        try:
            page.get_by_text("scheduled to start").first.wait_for(timeout=60_000)
            break
        except Exception:
            page.screenshot(path=str(stack.shots / f"failed-quick-run-{attempt}.png"))
            if attempt == 2 or not dialog.is_visible():
                raise AssertionError(f"Quick run did not start a run; failed requests: "
                                     f"{failures}") from None

    def ui_run() -> str | None:
        runs = stack.ok("POST", "/flow_runs/filter", {"flow_runs": {
            "deployment_id": {"any_": [deployment["id"]]}, "id": {"not_any_": [api_run]}},
            "sort": "EXPECTED_START_TIME_DESC", "limit": 20})
        manual = [r for r in runs if "auto-scheduled" not in r["tags"]]
        return manual[0]["id"] if manual else None

    ui_run_id = wait_for("the run started from the UI", ui_run, 180)
    runs = [stack.wait_final(api_run, 150), stack.wait_final(ui_run_id, 150)]
    for run in runs:
        assert run["state"]["type"] == "COMPLETED", (run["state"], stack.logs(run["id"]))
    first, second = sorted(runs, key=lambda r: r["start_time"])
    assert first["end_time"] <= second["start_time"], "concurrency_limit=1: one at a time"
    assert _check_run_output(stack, api_run) != _check_run_output(stack, ui_run_id)

    # the deployment page with its schedule, concurrency limit and the two finished runs
    page.goto(f"{stack.ui}/deployments/deployment/{deployment['id']}")
    page.get_by_text("At 08:00 AM, only on Monday").wait_for()
    page.get_by_text("Completed").nth(1).wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(stack.shots / "deployment.png"))

    page.set_viewport_size({"width": 1400, "height": 1300})
    page.goto(f"{stack.ui}/runs/flow-run/{ui_run_id}")
    page.get_by_text("Artifacts", exact=True).first.click()
    page.get_by_text("report-weekly-newsletter").first.wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(stack.shots / "run-artifacts.png"))
    page.get_by_text("report-weekly-newsletter").first.click()
    page.get_by_text("Run report: weekly-newsletter").first.wait_for()
    page.wait_for_timeout(800)
    page.screenshot(path=str(stack.shots / "run-report.png"))
    page.close()
    for name in ("deployment.png", "run-form.png", "run-artifacts.png", "run-report.png"):
        assert (stack.shots / name).stat().st_size > 10_000


def test_two_campaigns_run_at_once_on_postgresql(stack: Stack) -> None:
    import datetime as dt

    import psycopg

    names = ("weekly-newsletter", "invoice")
    deployments = [stack.deployment(f"send-campaign/{name}")["id"] for name in names]

    def start(deployment_id: str) -> str:
        # the 3,000 customers keep each run going for seconds, so a run the runner picks
        # up one poll (2 s) after the other still overlaps it
        return stack.ok("POST", f"/deployments/{deployment_id}/create_flow_run",
                        {"parameters": {"customers": "data/big.csv"}})["id"]

    with ThreadPoolExecutor(2) as pool:  # both at the same moment
        run_ids = list(pool.map(start, deployments))
    runs = [stack.wait_final(run_id, 300) for run_id in run_ids]
    customers = csv_ids(stack.root / "data" / "big.csv")
    for name, run in zip(names, runs, strict=True):
        assert run["state"]["type"] == "COMPLETED", (name, run["state"], stack.logs(run["id"]))
        out = stack.run_folder(name, run["id"])
        assert [r["customer_id"] for r in read_rows(out / "manifest.jsonl")] == customers
        assert json.loads((out / "run.json").read_text())["status"] == "finished"
    (start_a, end_a), (start_b, end_b) = (
        (dt.datetime.fromisoformat(r["start_time"]), dt.datetime.fromisoformat(r["end_time"]))
        for r in runs)
    overlap = (min(end_a, end_b) - max(start_a, start_b)).total_seconds()
    assert overlap > 0, f"one after the other: {runs[0]} {runs[1]}"
    # the server keeps them in PostgreSQL, not in a SQLite file under PREFECT_HOME
    with psycopg.connect(stack.database.replace("postgresql+psycopg://", "postgresql://"),
                         connect_timeout=30) as conn:
        stored = conn.execute("SELECT id::text, state_type::text FROM flow_run "
                              "WHERE id = ANY(%s::uuid[])", (run_ids,)).fetchall()
    assert sorted(stored) == sorted((run_id, "COMPLETED") for run_id in run_ids)
    assert not list((stack.home / "prefect").glob("*.db"))


def test_bad_parameters_are_refused_before_any_work(stack: Stack) -> None:
    invoice = stack.deployment("send-campaign/invoice")
    path = f"/deployments/{invoice['id']}/create_flow_run"
    status, body = stack.call("POST", path, {"parameters": {"limit": -1}})
    assert status in (409, 422) and "limit" in json.dumps(body), (status, body)
    status, body = stack.call("POST", path, {"parameters": {"campaign": "/etc/hosts"}})
    assert status in (409, 422), (status, body)
    status, body = stack.call("POST", path, {"parameters": {"advanced": {"batch_size": 0}}})
    assert status in (409, 422) and "batch_size" in json.dumps(body), (status, body)

    before = set((stack.root / "out").glob("invoice/*"))
    run_id = stack.run_deployment("send-campaign/invoice", {"dry_run": False})
    run = stack.wait_final(run_id, 90)
    assert run["state"]["type"] == "FAILED"
    assert "dry_run off AND confirm_send on" in run["state"]["message"]
    logs = wait_for("the refusal in the run's logs",
                    lambda: (lambda text: text if "refused before any work" in text else "")(
                        stack.logs(run_id)), 20)
    assert "sending needs two switches" in logs
    assert set((stack.root / "out").glob("invoice/*")) == before  # nothing written


def test_preview_deployment_selects_what_edition_preview_selects(stack: Stack) -> None:
    customers = stack.root / "data" / "customers.csv"
    with customers.open(encoding="utf-8", newline="") as handle:
        customer = next(csv.DictReader(handle))
    run_id = stack.run_deployment("preview-customer/preview-customer",
                                  {"campaign": "weekly-newsletter",
                                   "customer_id": customer["id"]})
    run = stack.wait_final(run_id, 90)
    assert run["state"]["type"] == "COMPLETED", stack.logs(run_id)
    artifacts = stack.artifacts(run_id)
    markdown = artifacts[f"preview-weekly-newsletter-{customer['id'].lower()}"]["data"]
    shown = markdown.split("## As `edition preview` prints it\n\n```text\n", 1)[1]
    shown = shown.split("\n```", 1)[0]

    env = {k: v for k, v in stack.env.items() if k != "PREFECT_API_URL"}
    cli = subprocess.run([sys.executable, "-m", "cli", "preview",
                          "campaigns/weekly-newsletter.yaml", "--customer", customer["id"]],
                         cwd=stack.root, env=env, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    printed = cli.stdout.split("\n----- text -----", 1)[0].rstrip("\n")
    assert shown == printed
    assert "chosen:" in shown and "greeting (greeting, takes 1)" in shown

    import httpx

    page = re.search(r"\((http://127\.0\.0\.1:\d+/previews/[^)]+\.html)\)",
                     artifacts["preview-html-weekly-newsletter"]["data"])
    assert page, artifacts["preview-html-weekly-newsletter"]["data"]
    response = httpx.get(page.group(1), timeout=10)
    assert response.status_code == 200 and customer["first_name"] in response.text


# -- restarts ----------------------------------------------------------------------------

def test_serve_killed_mid_run_restarts_consistent_and_picks_up_edits(stack: Stack) -> None:
    campaigns_dir = stack.root / "campaigns"
    run_id = stack.run_deployment("send-campaign/weekly-newsletter",
                                  {"customers": "data/big.csv", "advanced": {"batch_size": 20}})

    def folder_with_rows() -> Path | None:
        for info in (stack.root / "out" / "weekly-newsletter").glob("*/run.json"):
            if json.loads(info.read_text())["flow_run_id"] == run_id:
                manifest = info.parent / "manifest.jsonl"
                if manifest.exists() and manifest.read_bytes().count(b"\n") >= 100:
                    return info.parent
        return None

    out = wait_for("the big run to be under way", folder_with_rows, 180, 0.2,
                   log=stack.serve_log)
    os.killpg(stack.serve.pid, signal.SIGKILL)  # serve and its flow-run process, mid-run
    stack.serve.wait(timeout=10)
    assert stack.flow_run(run_id)["state"]["type"] == "RUNNING"
    assert json.loads((out / "run.json").read_text())["status"] == "running"

    _campaign_variant(campaigns_dir / "daily-digest.yaml", campaigns_dir / "daily-digest.yaml",
                      "daily-digest", '{cron: "45 7 * * 1-5", timezone: Europe/Madrid}')
    _campaign_variant(campaigns_dir / "invoice.yaml", campaigns_dir / "flash-sale.yaml",
                      "flash-sale", None)
    stack.start_serve()
    wait_for("the added campaign", lambda: "flash-sale" in stack.deployments(), 180,
             log=stack.serve_log)
    run = stack.wait_final(run_id, 180)
    assert run["state"]["type"] == "CRASHED"
    assert "output made consistent" in run["state"]["message"]

    rows = read_rows(out / "manifest.jsonl")
    assert [r["customer_id"] for r in rows] == csv_ids(stack.root / "data" / "big.csv")
    done = [r for r in rows if r["status"] == "rendered"]
    rest = [r for r in rows if r["status"] != "rendered"]
    assert done and rest and rows == done + rest  # a prefix was rendered, the rest was not
    assert {(r["status"], r["reason"]) for r in rest} == {("failed", "run interrupted")}
    named = {rel for r in rows for rel in r["files"].values()}
    present = {str(p.relative_to(out)) for p in out.rglob("*")
               if p.is_file() and p.parent != out}
    assert present == named  # no file without a row, no row without its files
    assert not list(out.rglob("*.tmp"))
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert "Run interrupted" in (out / "report.md").read_text()
    assert "interrupted run repaired" in stack.serve_log.read_text(errors="replace")

    schedules = [(s["schedule"]["cron"], s["schedule"]["timezone"])
                 for s in stack.deployment("send-campaign/daily-digest")["schedules"]]
    assert schedules == [("45 7 * * 1-5", "Europe/Madrid")]


# -- work pools (last: they re-register the same deployment names) ----------------------

def test_a_work_pool_worker_runs_the_served_deployments_confined(stack: Stack,
                                                                  tmp_path: Path) -> None:
    pool = "edition-pool"
    stop(stack.serve)  # from here on the pool's worker, not serve, runs the deployments

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", *args], cwd=stack.home, env=stack.env,
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, (args, done.stdout[-3000:] + done.stderr[-3000:])
        return " ".join((done.stdout + done.stderr).split())

    run("prefect", "work-pool", "create", pool, "--type", "process")
    said = run("cli", "serve", "--root", str(stack.root), "--work-pool", pool)
    assert f"with work pool {pool}" in said, said
    weekly = stack.deployment("send-campaign/weekly-newsletter")
    assert weekly["work_pool_name"] == pool
    assert weekly["entrypoint"] == "flows.campaign.send_campaign"  # the installed package
    assert weekly["job_variables"]["working_dir"] == str(stack.root)
    assert weekly["job_variables"]["env"]["EDITION_CONTENT_ROOT"] == str(stack.root)
    assert "EDITION_SERVE_ALLOW" in weekly["job_variables"]["env"]

    good = stack.run_deployment("send-campaign/weekly-newsletter", {})
    bad = stack.run_deployment("send-campaign/weekly-newsletter", {"customers": "/etc/passwd"})
    before = set((stack.root / "out" / "weekly-newsletter").iterdir())
    # an empty working directory and no confinement of its own: the job's working_dir
    # and env carry both
    elsewhere = tmp_path / "worker"
    elsewhere.mkdir()
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool],
            cwd=elsewhere, env={k: v for k, v in stack.env.items()
                                if k not in {"EDITION_SERVE_ALLOW", "EDITION_CONTENT_ROOT"}},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        refused = stack.wait_final(bad, 300, log=log)
        finished = stack.wait_final(good, 300, log=log)
    finally:
        stop(worker)
    assert refused["state"]["type"] == "FAILED", refused["state"]
    assert "outside the content root" in refused["state"]["message"], refused["state"]
    assert finished["state"]["type"] == "COMPLETED", (finished["state"], stack.logs(good))
    out = stack.run_folder("weekly-newsletter", good)
    assert set((stack.root / "out" / "weekly-newsletter").iterdir()) == before | {out}
    rows = read_rows(out / "manifest.jsonl")
    assert [r["customer_id"] for r in rows] == csv_ids(stack.root / "data" / "customers.csv")
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert not list(elsewhere.iterdir())  # nothing written where the worker was started


# -- prefect.yaml (last: it re-registers the same deployment names for a work pool) -----

def test_prefect_yaml_deploys_the_same_deployments(stack: Stack, tmp_path: Path) -> None:
    site = tmp_path / "deploy"
    for folder in (*CONTENT, "flows"):
        shutil.copytree(REPO / folder, site / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "prefect.yaml", site / "prefect.yaml")
    for args in (["work-pool", "create", "edition", "--type", "process"],
                 ["--no-prompt", "deploy", "--all"]):
        done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=site,
                              env=stack.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    weekly = stack.deployment("send-campaign/weekly-newsletter")
    assert weekly["work_pool_name"] == "edition"
    assert weekly["entrypoint"] == "flows/campaign.py:send_campaign"
    assert weekly["parameters"] == {"campaign": "weekly-newsletter"}
    assert [(s["schedule"]["cron"], s["schedule"]["timezone"]) for s in weekly["schedules"]] \
        == [("0 8 * * MON", "Europe/London")]
    assert weekly["global_concurrency_limit"]["limit"] == 1
    assert weekly["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {
        "directory": str(site)}}]
    preview = stack.deployment("preview-customer/preview-customer")
    assert preview["entrypoint"] == "flows/preview.py:preview_customer"
