"""Beyond one machine: Dask workers that share no disk with the flow.

A `dask scheduler` and three `dask worker` processes run on loopback, started in an empty
folder; when the tests run as root, in a mount namespace of their own where the content
root is covered by an empty folder, so they cannot read it whatever their rights. The
flow sends the sample campaign through them: the content travels as a bundle, the run
folder is `s3://` on moto's server, the send ledger is in PostgreSQL, the messages go to
an aiosmtpd sink. One worker is killed with SIGKILL mid-send. Every recipient gets at
most one message, every one not left `unknown` exactly one, and the S3 run folder
equals a local single-process run's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from conftest import AS_OF, REPO, run_cli
from fixtures_delivery import SinkHandler, free_port, moto_url, smtp_sink  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.soak, pytest.mark.usefixtures("prefect_harness")]

BUCKET = "edition-runs"
CONTENT = ("campaigns", "templates", "articles", "offers", "greetings")


def hiding(private: Path, empty: Path) -> list[str]:
    """A command prefix that covers `private` with `empty` for the command (needs root)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return []
    script = f'mount --bind "{empty}" "{private}" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]


class Cluster:
    """`dask scheduler` + N `dask worker` processes on 127.0.0.1, in an empty folder."""

    def __init__(self, folder: Path, env: dict[str, str], private: Path, workers: int = 3):
        self.folder, self.env, self.private = folder, env, private
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.count = workers

    def _start(self, *args: str) -> subprocess.Popen:
        log = (self.folder / f"{args[0]}-{len(self.procs)}.log").open("wb")
        cover = self.folder / "cover"
        cover.mkdir(exist_ok=True)
        proc = subprocess.Popen([*hiding(self.private, cover),
                                 str(Path(sys.executable).with_name("dask")),
                                 *args], cwd=self.folder, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def __enter__(self) -> Cluster:
        self._start("scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                    "--no-dashboard")
        for _ in range(self.count):
            self.workers.append(self._start(
                "worker", self.address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                "--local-directory", str(self.folder), "--host", "127.0.0.1"))
        from distributed import Client

        deadline = time.monotonic() + 180
        while True:
            try:
                with Client(self.address, timeout=10) as client:
                    client.wait_for_workers(self.count, timeout=60)
                    return self
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


@pytest.fixture
def private_site(tmp_path: Path) -> Path:
    """The sample content in a folder only root can read."""
    root = tmp_path / "private" / "site"
    for folder in CONTENT:
        shutil.copytree(REPO / folder, root / folder)
    os.chmod(tmp_path / "private", 0o700)
    return root


def keys_under(s3: Any, prefix: str) -> dict[str, bytes]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"][len(prefix):]] = s3.get_object(Bucket=BUCKET,
                                                            Key=item["Key"])["Body"].read()
    return found


def test_dask_workers_without_the_content_send_exactly_once_into_s3_and_postgresql(
        private_site: Path, tmp_path: Path, moto_url: str, fresh_postgresql_url: str,
        sample_customers: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    from flows.campaign import RunSettings, send_campaign

    campaign_file = private_site / "campaigns" / "weekly-newsletter.yaml"
    campaign = yaml.safe_load(campaign_file.read_text(encoding="utf-8"))
    campaign["delivery"] = {"to": "local", "ledger": fresh_postgresql_url}
    campaign_file.write_text(yaml.safe_dump(campaign, allow_unicode=True), encoding="utf-8")
    s3 = boto3.client("s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket=BUCKET)
    empty = tmp_path / "empty"
    empty.mkdir()
    os.chmod(empty, 0o777)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH"}} | {
        "EDITION_S3_ENDPOINT_URL": moto_url, "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_HOME": str(empty / "prefect"), "HOME": str(empty),
        "NO_PROXY": "127.0.0.1,localhost", "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    os.environ["EDITION_S3_ENDPOINT_URL"] = moto_url
    handler = SinkHandler(delay=0.005)
    with smtp_sink(handler) as (port, sink), Cluster(empty, env, private_site.parent) as cluster:
        from distributed import Client

        with Client(cluster.address, timeout=30) as client:  # the workers cannot see it
            seen = client.run(os.path.exists, str(campaign_file))
        assert seen and not any(seen.values()), seen
        killed: list[int] = []

        def kill_one() -> None:  # a worker dies mid-send
            deadline = time.monotonic() + 240
            while sum(sink.received.values()) < 60 and time.monotonic() < deadline:
                time.sleep(0.01)
            victim = cluster.workers[0]
            os.killpg(victim.pid, signal.SIGKILL)
            killed.append(victim.pid)

        killer = threading.Thread(target=kill_one, daemon=True)
        killer.start()
        state = send_campaign(
            campaign=str(campaign_file), customers=str(sample_customers), as_of=AS_OF,
            dry_run=False, confirm_send=True, to=f"smtp://127.0.0.1:{port}",
            mailing="dask-test", return_state=True,
            advanced=RunSettings(task_runner="dask", dask_address=cluster.address,
                                 out=f"s3://{BUCKET}/runs/one", batch_size=25,
                                 run_id="dask-one", review_before_send=False))
        killer.join(60)
        if not state.is_completed():  # the dead worker's batch: a rerun finishes it
            state = send_campaign(
                campaign=str(campaign_file), customers=str(sample_customers), as_of=AS_OF,
                dry_run=False, confirm_send=True, to=f"smtp://127.0.0.1:{port}",
                mailing="dask-test", return_state=True,
                advanced=RunSettings(task_runner="dask", dask_address=cluster.address,
                                     out=f"s3://{BUCKET}/runs/two", batch_size=25,
                                     run_id="dask-two", review_before_send=False))
        assert killed, "the worker was not killed"
        time.sleep(1)
    remote = keys_under(s3, "runs/two/" if (keys_under(s3, "runs/two/")) else "runs/one/")
    rows = [json.loads(line) for line in remote["manifest.jsonl"].decode().splitlines()]
    emails = {r["id"]: r["email"] for r in _csv(sample_customers)}
    assert [r["customer_id"] for r in rows] == list(emails)
    unknown = {r["customer_id"] for r in rows if r["status"] == "unknown"}
    assert len(unknown) <= 3  # at most what the killed worker had in flight
    for row in rows:
        got = sink.received[emails[row["customer_id"]]]
        assert got == 1 if row["status"] == "sent" else got in (0, 1), row
    assert max(sink.received.values()) == 1
    # the same editions as one local process makes
    local = tmp_path / "local"
    rc, _, stderr = run_cli("run", str(campaign_file), "--customers", sample_customers, "--out",
                            local, "--as-of", AS_OF, "--workers", "1", cwd=private_site)
    assert rc == 0, stderr
    reference = [json.loads(line) for line in (local / "manifest.jsonl").read_text().splitlines()]
    assert [(r["customer_id"], r["version"], r["segments"], r["modules"]) for r in rows] == [
        (r["customer_id"], r["version"], r["segments"], r["modules"]) for r in reference]
    for row in reference:
        assert remote[row["files"]["html"]] == (local / row["files"]["html"]).read_bytes()
    assert {"versions.json", "report.md", "run.json"} <= set(remote)


def _csv(path: Path) -> Iterator[dict[str, str]]:
    import csv

    with path.open(encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)
