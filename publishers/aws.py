"""Shared boto3 plumbing for the S3 and SES targets: one client, credentials from the
environment or an AWS profile only, and error texts that never carry secrets."""

from __future__ import annotations

import os
from typing import Any

from edition.errors import DeliveryError
from publishers.base import BasePublisher, redact

# Error codes meaning the target as a whole cannot work (wrong credentials, account
# paused...): the run should stop instead of failing every customer one by one.
TARGET_ERRORS = {
    "AccessDenied",
    "AccessDeniedException",
    "AccountSuspendedException",
    "AllAccessDisabled",
    "AuthorizationHeaderMalformed",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "InvalidBucketName",
    "InvalidClientTokenId",
    "NoSuchBucket",
    "PermanentRedirect",
    "SendingPausedException",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
}


def make_client(service: str, *, target: str, region: str | None, endpoint_url: str | None,
                profile: str | None, config: dict[str, Any]) -> Any:
    """A boto3 client; credentials come from the environment or the named profile only."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
        return session.client(service, endpoint_url=endpoint_url, config=Config(**config))
    except BotoCoreError as exc:
        raise DeliveryError(f"cannot create the {service} client: {redact(str(exc))}",
                            target) from None


class AwsPublisher(BasePublisher):
    """A target behind one boto3 client, made on `open` (or the first publish)."""

    service: str  # the boto3 service name
    botocore_attempts: int  # botocore's own tries of a request, the first included
    region: str | None
    endpoint_url: str | None
    options: Any  # typed options with profile, connections and timeout
    client: Any

    def open(self) -> None:
        if self.client is None:
            self.client = make_client(
                self.service, target=self.target, region=self.region,
                endpoint_url=self.endpoint_url, profile=self.options.profile,
                config={
                    "retries": retries(self.botocore_attempts),
                    "max_pool_connections": max(1, self.options.connections),
                    "connect_timeout": self.options.timeout,
                    "read_timeout": self.options.timeout,
                },
            )

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def retries(attempts: int) -> dict[str, Any]:
    """botocore's retry settings for `attempts` tries of a request, the first included.

    botocore's `max_attempts` counts retries, not tries: `max_attempts: 1` resends once,
    and standard mode resends after a dropped connection, when the service may already
    have acted. `total_max_attempts` counts the first try, so 1 means never resent.
    """
    return {"mode": "standard", "total_max_attempts": max(1, attempts)}


def error_parts(exc: Any) -> tuple[str, str, int]:
    """(code, message, HTTP status) of a botocore ClientError."""
    err = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return str(err.get("Code", "")), redact(str(err.get("Message", ""))) or "", int(status)
