"""The S3 target against moto in server mode on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

# tests/ is not a package: pytest puts it on sys.path
from fixtures_delivery import (  # noqa: F401 (moto_url is a fixture)
    AWS_ENV,
    make_delivery,
    moto_reset,
    moto_url,
)

from publishers import DeliveryError, open_publisher
from publishers.s3 import S3Publisher

BUCKET = "edition-test"


@pytest.fixture
def s3(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("EDITION_S3_ENDPOINT_URL", raising=False)
    moto_reset(moto_url)
    client = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def files_for(cid: str) -> dict[str, tuple[str, bytes, str]]:
    return {
        "html": (f"html/{cid}.html", b"<p>Hello</p>", "text/html; charset=utf-8"),
        "text": (f"text/{cid}.txt", b"Hello", "text/plain; charset=utf-8"),
        "pdf": (f"pdf/{cid}.pdf", b"%PDF-1.7 fake", "application/pdf"),
    }


def publisher(url: str, target: str = f"s3://{BUCKET}/news/2026", **options: Any) -> S3Publisher:
    pub = open_publisher(target, out_dir=Path("."), options={"endpoint_url": url, **options})
    assert isinstance(pub, S3Publisher)
    return pub


def test_uploads_every_file_with_type_disposition_and_encryption(s3: Any, moto_url: str) -> None:
    delivery = make_delivery("C1", files=files_for("C1"))
    with publisher(moto_url, sse="AES256") as pub:
        outcome = pub.publish(delivery)
    assert outcome.status == "sent"
    expected = {
        "news/2026/html/C1.html": ("text/html; charset=utf-8", "inline", b"<p>Hello</p>"),
        "news/2026/text/C1.txt": ("text/plain; charset=utf-8", "inline", b"Hello"),
        "news/2026/pdf/C1.pdf": ("application/pdf", 'attachment; filename="C1.pdf"',
                                 b"%PDF-1.7 fake"),
        "news/2026/eml/C1.eml": ("message/rfc822", 'attachment; filename="C1.eml"',
                                 delivery.eml),
    }
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == set(expected)
    etags = {}
    for key, (ctype, disposition, body) in expected.items():
        obj = s3.get_object(Bucket=BUCKET, Key=key)
        assert (obj["ContentType"], obj["ContentDisposition"]) == (ctype, disposition)
        assert obj["ServerSideEncryption"] == "AES256"
        assert obj["Body"].read() == body
        assert obj["Metadata"] == {"campaign": "spring", "content-hash": delivery.content_hash}
        etags[key.split("/")[2]] = obj["ETag"].strip('"')
    assert outcome.provider_id == " ".join(f"{f}:{etags[f]}" for f in sorted(etags))


def test_single_file_gives_its_etag_and_kms_encryption(s3: Any, moto_url: str) -> None:
    delivery = make_delivery("C2", eml=False, files={"pdf": files_for("C2")["pdf"]})
    with publisher(moto_url, sse="aws:kms", kms_key_id="alias/edition") as pub:
        outcome = pub.publish(delivery)
    head = s3.head_object(Bucket=BUCKET, Key="news/2026/pdf/C2.pdf")
    assert outcome.provider_id == head["ETag"].strip('"')
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith("alias/edition")


def test_hostile_ids_stay_under_the_prefix(s3: Any, moto_url: str) -> None:
    ids = ["../../etc/passwd", "a/b", "con", "名前", "x" * 500, ""]
    with publisher(moto_url) as pub:
        for cid in ids:
            assert pub.publish(make_delivery(cid, "x@example.com")).status == "sent"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert len(keys) == len(ids)
    for key in keys:
        prefix, fmt, name = key.rsplit("/", 2)
        assert (prefix, fmt) == ("news/2026", "eml") and ".." not in key and len(name) < 90


def test_endpoint_from_environment_and_bucket_root(s3: Any, moto_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITION_S3_ENDPOINT_URL", moto_url)
    with open_publisher(f"s3://{BUCKET}", out_dir=Path(".")) as pub:
        assert pub.publish(make_delivery("C3")).status == "sent"
    assert s3.head_object(Bucket=BUCKET, Key="eml/C3.eml")["ContentType"] == "message/rfc822"


def test_throttling_and_5xx_are_retried(s3: Any, moto_url: str) -> None:
    calls = []

    def slow_down_once(request: Any, **_: Any) -> AWSResponse | None:
        calls.append(request.url)
        if len(calls) == 1:  # answer before the request leaves, like a throttling S3
            body = (b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate."
                    b"</Message></Error>")
            return AWSResponse(request.url, 503, {}, _Raw(body))
        return None

    with publisher(moto_url, max_attempts=5) as pub:
        pub.client.meta.events.register("before-send.s3.PutObject", slow_down_once)
        outcome = pub.publish(make_delivery("C4"))
    assert outcome.status == "sent" and len(calls) == 2
    assert s3.head_object(Bucket=BUCKET, Key="news/2026/eml/C4.eml")


def test_missing_bucket_is_a_target_error(s3: Any, moto_url: str) -> None:
    with publisher(moto_url, "s3://no-such-bucket-here/x") as pub, \
            pytest.raises(DeliveryError, match="NoSuchBucket"):
        pub.publish(make_delivery("c5"))


def test_bad_targets_and_options(moto_url: str) -> None:
    with pytest.raises(DeliveryError, match="AWS_ACCESS_KEY_ID") as info:
        open_publisher("s3://AKIAXXX:topsecret@bucket/p", out_dir=Path("."))
    assert "topsecret" not in str(info.value)
    with pytest.raises(DeliveryError, match="sse must be"):
        publisher(moto_url, sse="DES")
    with pytest.raises(DeliveryError, match="kms_key_id needs"):
        publisher(moto_url, kms_key_id="k")
    with pytest.raises(DeliveryError, match="unknown delivery option"):
        publisher(moto_url, acl="public-read")
    assert publisher(moto_url, "s3://b-x-y/a/b/").target == "s3://b-x-y/a/b"


class _Raw:
    """A minimal urllib3-like body for a canned botocore response."""

    def __init__(self, data: bytes):
        self.data = data

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self.data
