"""Deliver files to S3: `s3://bucket/prefix` → `<prefix>/<format>/<safe-id>.<ext>`.

Uploads are idempotent (the same key gets the same bytes), so botocore's own retries
on throttling and 5xx are safe here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import field_validator, model_validator

from edition.errors import DeliveryError
from edition.naming import relative_path
from publishers.aws import TARGET_ERRORS, AwsPublisher, error_parts
from publishers.base import (
    Delivery,
    Outcome,
    TargetOptions,
    redact,
    refuse_secrets,
    take_options,
)

ENDPOINT_ENV = "EDITION_S3_ENDPOINT_URL"

_INLINE = {"html", "text", "txt"}


class S3Options(TargetOptions):
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    sse: str | None = None     # AES256 or aws:kms
    kms_key_id: str | None = None
    max_attempts: int = 5
    connections: int = 10      # HTTP connection pool size, for threaded callers
    timeout: float = 60.0

    @field_validator("sse")
    @classmethod
    def _sse(cls, value: str | None) -> str | None:
        if value not in (None, "AES256", "aws:kms"):
            raise ValueError("option sse must be AES256 or aws:kms")
        return value

    @model_validator(mode="after")
    def _kms(self) -> S3Options:
        if self.kms_key_id and self.sse != "aws:kms":
            raise ValueError("option kms_key_id needs sse: aws:kms")
        return self


class S3Publisher(AwsPublisher):
    """Uploads every file of a delivery (and its message) with one shared client."""

    schemes = ("s3",)
    forms = ("s3://bucket/prefix",)
    options_model = S3Options
    channel = "files"
    service = "s3"

    def __init__(self, target: str, *, out_dir: Path | None = None,
                 options: Mapping[str, Any] | None = None):
        url = urlsplit(target)
        refuse_secrets(url, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
        if url.scheme != "s3" or not url.netloc or url.query or url.fragment:
            raise DeliveryError("expected s3://bucket/prefix", target)
        self.bucket = url.netloc
        self.prefix = url.path.strip("/")
        self.target = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        opts = take_options(S3Options, self.target, options)
        self.options = opts
        self.region = opts.region
        self.endpoint_url = opts.endpoint_url or os.environ.get(ENDPOINT_ENV)
        self.botocore_attempts = opts.max_attempts
        self.extra: dict[str, str] = {}
        sse, kms = opts.sse, opts.kms_key_id
        if sse:
            self.extra["ServerSideEncryption"] = sse
        if kms:
            self.extra["SSEKMSKeyId"] = kms
        self.client = None

    def key(self, fmt: str, customer_id: str) -> str:
        """The object key for one file of one customer: the run folder's path, prefixed."""
        rel = relative_path(fmt, customer_id)
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def publish(self, delivery: Delivery) -> Outcome:
        """Upload the delivery's files; `sent` only when every one of them is stored."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if self.client is None:
            self.open()
        files = dict(delivery.files)
        if delivery.eml is not None and "eml" not in files:
            files["eml"] = ("", delivery.eml, "message/rfc822")
        if not files:
            return Outcome("failed", reason="nothing to deliver: no message and no files")
        ids = []
        for fmt, (_rel, data, ctype) in sorted(files.items()):
            key = self.key(fmt, delivery.customer_id)
            filename = key.rsplit("/", 1)[-1]
            disposition = "inline" if fmt in _INLINE else f'attachment; filename="{filename}"'
            try:
                reply = self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, ContentType=ctype,
                    ContentDisposition=disposition,
                    Metadata={"campaign": delivery.campaign,
                              "content-hash": delivery.content_hash[:128]},
                    **self.extra,
                )
            except ClientError as exc:
                code, message, _status = error_parts(exc)
                if code in TARGET_ERRORS or code.startswith("KMS."):
                    raise DeliveryError(f"{code}: {message}", self.target) from None
                return Outcome("failed", reason=f"{key}: {code}: {message}")
            except NoCredentialsError:
                raise DeliveryError("no AWS credentials (set AWS_* variables or a profile)",
                                    self.target) from None
            except BotoCoreError as exc:  # unreachable endpoint, timeouts after retries
                raise DeliveryError(redact(str(exc)) or type(exc).__name__, self.target) from None
            etag = str(reply.get("ETag", "")).strip('"')
            version = reply.get("VersionId")
            ids.append((fmt, f"{etag}/{version}" if version else etag))
        if len(ids) == 1:
            return Outcome("sent", provider_id=ids[0][1])
        return Outcome("sent", provider_id=" ".join(f"{fmt}:{pid}" for fmt, pid in ids))
