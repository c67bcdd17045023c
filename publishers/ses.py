"""Deliver by Amazon SES v2: `ses` (region from options/env) or `ses://region`.

SES has no idempotency key, so botocore's automatic retries are switched off: a
request is retried only when SES certainly did not take it (throttling, 503, no
connection). A timeout or broken connection after the request went out, or a 500,
gives `unknown`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from publishers._aws import TARGET_ERRORS, AwsPublisher, error_parts
from publishers.base import (
    Delivery,
    Outcome,
    RateLimiter,
    as_delays,
    as_str,
    backoff_delay,
    clean_address,
    redact,
    refuse_secrets,
    sender_address,
    take_options,
)
from publishers.errors import DeliveryError

log = logging.getLogger("edition.publish.ses")

ENDPOINT_ENV = "EDITION_SES_ENDPOINT_URL"

OPTIONS = {
    "region": (as_str, None),
    "endpoint_url": (as_str, None),
    "profile": (as_str, None),
    "configuration_set": (as_str, None),
    "rate": (float, 0.0),  # messages per second (your SES sending rate); 0 = unlimited
    "burst": (int, 1),
    "attempts": (int, 5),
    "backoff": (as_delays, (0.5, 1.0, 2.0, 4.0)),
    "connections": (int, 10),  # HTTP connection pool size, for threaded callers
    "timeout": (float, 30.0),
}

THROTTLING = {"TooManyRequestsException", "Throttling", "ThrottlingException",
              "LimitExceededException", "ServiceUnavailable", "ServiceUnavailableException"}


class SesPublisher(AwsPublisher):
    """Sends each delivery's raw message through SES v2 `SendEmail`."""

    service = "sesv2"
    botocore_attempts = 1  # no automatic resend of a request SES may have taken

    def __init__(self, target: str, *, out_dir: Path | None = None,
                 options: Mapping[str, Any] | None = None):
        url = urlsplit(target)
        refuse_secrets(url, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
        if target != "ses" and (url.scheme != "ses" or url.path.strip("/") or url.query):
            raise DeliveryError("expected ses or ses://region", target)
        opts = take_options(target, options, OPTIONS)
        self.region = url.netloc or opts["region"]
        self.target = f"ses://{self.region}" if url.netloc else "ses"
        self.options = opts
        self.endpoint_url = opts["endpoint_url"] or os.environ.get(ENDPOINT_ENV)
        self.attempts: int = max(1, opts["attempts"])
        self.backoff: tuple[float, ...] = opts["backoff"]
        self.limiter = RateLimiter(opts["rate"], opts["burst"])
        self.client = None

    def publish(self, delivery: Delivery) -> Outcome:
        """Send the raw message to the delivery's recipient; never raises for one bad message."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
        )

        if self.client is None:
            self.open()
        if delivery.eml is None:
            return Outcome("failed", reason="no email message for this customer")
        to = clean_address(delivery.recipient)
        if to is None:
            return Outcome("failed", reason="missing or invalid recipient address")
        sender = sender_address(delivery.eml)
        if sender is None:
            return Outcome("failed", reason="the message has no valid From address")
        request: dict[str, Any] = {
            "FromEmailAddress": sender,
            "Destination": {"ToAddresses": [to]},
            "Content": {"Raw": {"Data": delivery.eml}},
        }
        if self.options["configuration_set"]:
            request["ConfigurationSetName"] = self.options["configuration_set"]
        self.limiter.acquire()
        for attempt in range(1, self.attempts + 1):
            try:
                reply = self.client.send_email(**request)
                return Outcome("sent", provider_id=reply.get("MessageId"))
            except ClientError as exc:
                code, message, status = error_parts(exc)
                if code in TARGET_ERRORS or "quota exceeded" in message.lower():
                    raise DeliveryError(f"{code}: {message}", self.target) from None
                if code in THROTTLING or status == 503:
                    reason = f"{code}: {message}"
                elif status >= 500:  # SES may have queued it before failing
                    return Outcome("unknown", reason=f"{code} (HTTP {status}): {message}; "
                                   "not retried, it may have been sent")
                else:  # MessageRejected, MailFromDomainNotVerifiedException, BadRequest...
                    return Outcome("failed", reason=f"{code}: {message}")
            except ConnectionError as exc:  # no connection was made: nothing was sent
                reason = redact(str(exc)) or type(exc).__name__
                if attempt == self.attempts:
                    raise DeliveryError(reason, self.target) from None
            except HTTPClientError as exc:  # the request may have reached SES
                return Outcome("unknown", reason=f"{redact(str(exc))}; not retried, it may "
                               "have been sent")
            except NoCredentialsError:
                raise DeliveryError("no AWS credentials (set AWS_* variables or a profile)",
                                    self.target) from None
            except BotoCoreError as exc:  # parameter validation and the like: before sending
                return Outcome("failed", reason=redact(str(exc)))
            if attempt < self.attempts:
                log.warning("%s: customer %r: %s; retrying", self.target,
                            delivery.customer_id, reason)
                time.sleep(backoff_delay(self.backoff, attempt))
        return Outcome("failed", reason=f"{reason} (after {self.attempts} attempts)")
