"""Shared boto3 plumbing for the S3 and SES targets: one client, credentials from the
environment or an AWS profile only, and error texts that never carry secrets."""

from __future__ import annotations

import os
from typing import Any

from publishers.base import redact
from publishers.errors import DeliveryError

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


def error_parts(exc: Any) -> tuple[str, str, int]:
    """(code, message, HTTP status) of a botocore ClientError."""
    err = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return str(err.get("Code", "")), redact(str(err.get("Message", ""))) or "", int(status)
