"""A run folder is read back through the run-folder abstraction, wherever it is (issue
17, finding 7): `edition run --via-prefect` into `s3://…` whose flow run ends Failed
gives its summary (exit 3), and the artifacts read versions.json from S3.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from fixtures_delivery import moto_url  # noqa: F401

from edition.config import RunOptions

BUCKET = "edition-dask-runs"


# -- a Prefect run into S3 that ends Failed --------------------------------------------


@pytest.fixture
def s3_bucket(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("EDITION_S3_ENDPOINT_URL", moto_url)
    s3 = boto3.client("s3", endpoint_url=moto_url)
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    return s3


@pytest.mark.usefixtures("prefect_harness")
def test_a_prefect_run_into_s3_that_ends_failed_gives_its_summary(
        content_tree: Callable[..., Path], s3_bucket: Any) -> None:
    """Before, the CLI read the S3 report as the local path `s3:/…` (FileNotFoundError,
    exit 1 instead of 3) and the artifacts had no versions table."""
    from prefect.client.orchestration import get_client

    from flows.campaign import run_through_prefect

    page = "<html lang=en><body><h1>{{ customer.nickname }}</h1></body></html>\n"
    people = [{"id": f"N{i}", "email": f"n{i}@example.com", "nickname": f"Nick {i}"}
              for i in range(5)]
    people[3]["nickname"] = ""    # printed without a default: this customer fails
    root = content_tree(
        campaigns={"x.yaml": {"name": "s3-fails", "template": "page.html.j2",
                              "slots": {"articles": {"kind": "article", "count": 1}},
                              "formats": ["html"], "customers": "data/c.csv"}},
        templates={"page.html.j2": page}, articles={"a.md": {"title": "A"}},
        customers={"c.csv": people})
    prefix = f"runs/{root.parent.name}"
    options = RunOptions.build(campaign=str(root / "campaigns" / "x.yaml"),
                               out=f"s3://{BUCKET}/{prefix}").resolved()
    summary = run_through_prefect(options)
    assert (summary.exit_code, summary.failed, summary.counts) == (
        3, 1, {"failed": 1, "rendered": 4})
    stored = s3_bucket.get_object(Bucket=BUCKET, Key=f"{prefix}/report.md")["Body"].read()
    assert summary.report == stored.decode("utf-8") and "N3" in summary.report
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts() if a.key and "s3-fails" in a.key}
    assert "versions-s3-fails" in artifacts           # read from S3, not from `s3:/…`
    assert f"](s3://{BUCKET}/{prefix})" in artifacts["output-s3-fails"].data   # not file://
