"""S3 run folders keep the local folders' promises (issue 17, finding 6): one run at a
time, a live holder is never stolen, and a run killed with SIGKILL leaves a folder that the
next run on it repairs and finishes (or replaces, with --overwrite).

The real CLI writes to `s3://…` on moto's server (in this process, on 127.0.0.1). A run is
stopped (SIGSTOP) with its lock in S3 and its lease run out: others are refused, naming
it. Then it is killed (SIGKILL, whole process group); the same command finishes the
folder, another command is refused unless --overwrite. A lock left by a run on another
host is respected while its lease runs, and taken over once S3's clock says it ran out.
"""

from __future__ import annotations

import csv
import email.utils
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fixtures_delivery import moto_reset, moto_url  # noqa: F401 (moto_url is a fixture)
from fixtures_sending import (
    AS_OF,
    AWS,
    CAMPAIGN,
    cli_env,
    copy_site,
    edition,
    edition_command,
    make_customers,
)

pytestmark = [pytest.mark.soak, pytest.mark.timeout(900)]

BUCKET = "editions"
LEASE = 2   # seconds: the killed run's lease runs out while the test looks on
LOCK = ".edition.lock"
RUN_FILES = {"manifest.jsonl", "versions.json", "report.md", "run.json"}


@pytest.fixture
def s3(moto_url: str) -> Any:
    moto_reset(moto_url)
    client = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return copy_site(tmp_path / "site")


def env_for(moto: str) -> dict[str, str]:
    return AWS | {"EDITION_S3_ENDPOINT_URL": moto, "EDITION_S3_LOCK_LEASE": str(LEASE)}


def run_args(customers: Path, prefix: str, *extra: Any) -> list[Any]:
    return ["run", CAMPAIGN, "--customers", customers, "--out", f"s3://{BUCKET}/{prefix}",
            "--as-of", AS_OF, "--formats", "html,text", "--batch-size", 40, *extra]


def objects(s3: Any, prefix: str) -> dict[str, bytes]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                             Prefix=f"{prefix}/"):
        for item in page.get("Contents", []):
            found[item["Key"][len(prefix) + 1:]] = b""
    return found


def read(s3: Any, prefix: str, name: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{name}")["Body"].read()


def lock_info(s3: Any, prefix: str) -> dict[str, Any] | None:
    try:
        return json.loads(read(s3, prefix, LOCK))
    except s3.exceptions.NoSuchKey:
        return None


def lock_age(s3: Any, prefix: str) -> float:
    """Seconds since the lock object was last written, by S3's clock."""
    head = s3.head_object(Bucket=BUCKET, Key=f"{prefix}/{LOCK}")
    now = email.utils.parsedate_to_datetime(head["ResponseMetadata"]["HTTPHeaders"]["date"])
    return (now - head["LastModified"]).total_seconds()


def wait_for(what: str, check: Any, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def listed_files(s3: Any, prefix: str) -> set[str]:
    rows = [json.loads(line) for line in read(s3, prefix, "manifest.jsonl").splitlines()]
    return {rel for r in rows for rel in (r.get("files") or {}).values()}


def customer_objects(s3: Any, prefix: str) -> set[str]:
    return {k for k in objects(s3, prefix) if k.startswith(("html/", "text/"))}


def assert_finished_folder(s3: Any, prefix: str, rows: int) -> dict[str, Any]:
    """A complete run folder: one manifest row per customer, every file it lists and no
    other, run.json finished, no lock left behind."""
    manifest = [json.loads(line) for line in read(s3, prefix, "manifest.jsonl").splitlines()]
    assert len(manifest) == rows
    assert customer_objects(s3, prefix) == listed_files(s3, prefix)
    assert set(objects(s3, prefix)) == customer_objects(s3, prefix) | RUN_FILES
    info = json.loads(read(s3, prefix, "run.json"))
    assert info["status"] == "finished", info
    return info


class Running:
    """`edition run …` in its own process group (main process and pool workers)."""

    def __init__(self, args: list[Any], cwd: Path, env: dict[str, str], logs: Path):
        self.log = logs
        with logs.open("wb") as out:
            self.proc = subprocess.Popen([*edition_command(), *map(str, args)], cwd=cwd,
                                         env=cli_env(env), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
        self.proc.wait(60)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Processes a test started: killed (the whole group) whatever happens."""
    started: list[Running] = []
    yield started
    for proc in started:
        if proc.proc.poll() is None:
            proc.signal(signal.SIGCONT)
            proc.kill()


def first_rows(source: Path, count: int, dest: Path) -> Path:
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:count]
    with dest.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dest


def start_and_catch(site: Path, customers: Path, prefix: str, env: dict[str, str],
                    s3: Any, tmp_path: Path, running: list[Running]) -> Running:
    """Start a run and wait until it holds the folder and has uploaded some editions."""
    run = Running(run_args(customers, prefix, "--workers", 2), site, env,
                  tmp_path / f"{prefix.replace('/', '-')}.log")
    running.append(run)
    wait_for("the run to hold the folder and upload editions",
             lambda: run.proc.poll() is not None or (
                 lock_info(s3, prefix) is not None and len(customer_objects(s3, prefix)) >= 80))
    assert run.proc.poll() is None, f"the run ended before it could be caught:\n{run.output()}"
    return run


def test_killed_run_is_finished_by_the_next_and_a_live_one_is_never_stolen(
        s3: Any, moto_url: str, site: Path, tmp_path: Path,
        running: list[Running]) -> None:
    env = env_for(moto_url)
    customers = make_customers(1500, tmp_path / "customers.csv")
    prefix = "runs/one"
    first = start_and_catch(site, customers, prefix, env, s3, tmp_path, running)

    # the holder renews its lock while it runs
    wait_for("the lock's renewal", lambda: "renewed" in (lock_info(s3, prefix) or {}))
    assert first.proc.poll() is None, first.output()

    # stopped (alive, not renewing) with its lease run out: still never taken over
    first.signal(signal.SIGSTOP)
    holder = lock_info(s3, prefix)
    assert holder is not None
    wait_for("the lease to run out", lambda: lock_age(s3, prefix) > 2 * LEASE + 1)
    before = set(objects(s3, prefix))
    for extra in ((), ("--overwrite",)):
        code, out, err = edition(*run_args(customers, prefix, *extra), cwd=site, env=env)
        assert code == 1, out + err
        assert str(holder["run_id"]) in err and str(first.proc.pid) in err, err
    assert set(objects(s3, prefix)) == before  # --overwrite deleted nothing of it
    assert lock_info(s3, prefix) == holder

    # kill -9: the lock stays behind, with nobody to renew or delete it
    first.kill()
    assert lock_info(s3, prefix) == holder

    # another run's command is refused (its output would mix with the dead run's)
    others = first_rows(customers, 30, tmp_path / "others.csv")
    code, out, err = edition(*run_args(others, prefix), cwd=site, env=env)
    assert code == 1 and "--overwrite" in err and str(holder["run_id"]) in err, out + err

    # the same command takes the dead run's folder over, repairs and finishes it
    code, out, err = edition(*run_args(customers, prefix), cwd=site, env=env)
    assert code == 0, out + err
    info = assert_finished_folder(s3, prefix, 1500)
    assert info["resumes"] == holder["run_id"]


def test_overwrite_replaces_a_killed_runs_folder(s3: Any, moto_url: str, site: Path,
                                                 tmp_path: Path,
                                                 running: list[Running]) -> None:
    env = env_for(moto_url)
    customers = make_customers(1500, tmp_path / "customers.csv")
    prefix = "runs/two"
    start_and_catch(site, customers, prefix, env, s3, tmp_path, running).kill()
    assert lock_info(s3, prefix) is not None

    others = first_rows(customers, 30, tmp_path / "others.csv")
    code, out, err = edition(*run_args(others, prefix, "--overwrite"), cwd=site, env=env)
    assert code == 0, out + err
    info = assert_finished_folder(s3, prefix, 30)
    assert "resumes" not in info


def test_a_lock_from_another_host_holds_until_its_lease_runs_out(
        s3: Any, moto_url: str, site: Path, tmp_path: Path) -> None:
    env = env_for(moto_url)
    customers = make_customers(20, tmp_path / "customers.csv")
    prefix = "runs/three"
    elsewhere = {"holder": "0" * 32, "run_id": "r-elsewhere", "host": f"not-{socket.gethostname()}",
                 "pid": 4242, "pid_start": 1.0}

    def put_lock(lease: float) -> None:
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{LOCK}",
                      Body=json.dumps(elsewhere | {"lease_seconds": lease}).encode())

    put_lock(600)   # renewed just now, by a run we cannot see: it is alive
    for extra in ((), ("--overwrite",)):
        code, out, err = edition(*run_args(customers, prefix, *extra), cwd=site, env=env)
        assert code == 1 and "r-elsewhere" in err and elsewhere["host"] in err, out + err
    assert json.loads(read(s3, prefix, LOCK))["run_id"] == "r-elsewhere"

    put_lock(1)     # its holder stopped renewing a lease of one second
    wait_for("the lease to run out", lambda: lock_age(s3, prefix) > 3)
    code, out, err = edition(*run_args(customers, prefix), cwd=site, env=env)
    assert code == 0, out + err
    assert_finished_folder(s3, prefix, 20)


def test_the_lease_protocol_between_two_hosts(s3: Any, moto_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Two holders that cannot see each other's processes (different host names): the
    renewing one keeps the folder; once it stalls past its lease the other takes it, and
    the stalled one, on its next renewal, knows it lost and writes nothing more."""
    from edition.errors import FolderBusy, RunError
    from publishers.s3_folder import S3Folder

    monkeypatch.setenv("EDITION_S3_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("EDITION_S3_LOCK_LEASE", "1")
    location = f"s3://{BUCKET}/runs/four"
    first, second = S3Folder(location), S3Folder(location)
    first.lock({"run_id": "r-first", "host": "host-a.example", "pid": 11})
    try:
        held = first._held
        assert held is not None
        wait_for("two renewals", lambda: lock_info(s3, "runs/four").get("renewed")
                 and lock_age(s3, "runs/four") < 1, timeout=60)
        # renewed every 1/6 s: however long the other waits, the lock stays with its holder
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            with pytest.raises(FolderBusy, match=r"r-first .*host-a\.example"):
                second.lock({"run_id": "r-second", "host": "host-b.example", "pid": 22})
        # the holder stalls (no renewal) past its lease: the other takes the folder
        with pytest.MonkeyPatch.context() as stall:
            stall.setattr(held, "_renew_once", lambda: None)
            wait_for("the lease to run out", lambda: lock_age(s3, "runs/four") > 2,
                     timeout=60)
            second.lock({"run_id": "r-second", "host": "host-b.example", "pid": 22})
        assert second.taken_over is not None and second.taken_over["run_id"] == "r-first"
        assert lock_info(s3, "runs/four")["run_id"] == "r-second"
        # the first wakes up: its next renewal finds another holder; it stops writing
        wait_for("the first to see it lost the folder", lambda: held.lost, timeout=60)
        with pytest.raises(RunError, match="lost"):
            first.put("report.md", b"late")
        first.unlock()   # not its lock any more: left alone
        assert lock_info(s3, "runs/four")["run_id"] == "r-second"
    finally:
        first.unlock()
        second.unlock()
    assert lock_info(s3, "runs/four") is None
