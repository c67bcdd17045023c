"""Deliver by Amazon SES v2: `ses` (region from options/env) or `ses://region`.

SES has no idempotency key, so botocore's automatic retries are switched off: a
request is retried only when SES certainly did not take it (throttling, 503, no
connection). A timeout or broken connection after the request went out, or a 500,
gives `unknown`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from edition.content.plugins import EMAIL, Delays
from edition.errors import DeliveryError
from edition.send.rate import DomainThrottle, SharedRate
from publishers.aws import TARGET_ERRORS, AwsPublisher, error_parts, make_client, retries
from publishers.base import (
    Delivery,
    Outcome,
    RateLimiter,
    TargetOptions,
    backoff,
    clean_address,
    redact,
    refuse_secrets,
    sender_address,
    take_options,
)

log = logging.getLogger("edition.publish.ses")

ENDPOINT_ENV = "EDITION_SES_ENDPOINT_URL"

THROTTLING = {"TooManyRequestsException", "Throttling", "ThrottlingException",
              "LimitExceededException", "ServiceUnavailable", "ServiceUnavailableException"}


class SesOptions(TargetOptions):
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    configuration_set: str | None = None
    rate: float = 0.0          # messages per second (your SES sending rate); 0 = unlimited
    burst: int = 1
    # one rate for every worker of the send: a postgresql:// URL (workers on many
    # machines) or a file (processes of one machine) holding the shared bucket
    rate_store: str | None = None
    domain_rates: dict[str, float] = Field(default_factory=dict)  # messages/s per domain
    domain_backoff: float = 1.0    # first pause (s) of the account after throttling; doubles
    account_rate: bool = False     # no `rate`: send at the account's MaxSendRate (GetAccount)
    attempts: int = 5
    backoff: Delays = (0.5, 1.0, 2.0, 4.0)
    connections: int = 10
    timeout: float = 30.0


class SesPublisher(AwsPublisher):
    """Sends each delivery's raw message through SES v2 `SendEmail`."""

    schemes = ("ses",)
    forms = ("ses", "ses://region")
    options_model = SesOptions
    channel = EMAIL
    needs_email = True
    service = "sesv2"
    botocore_attempts = 1  # one try: botocore never resends a request SES may have taken

    def __init__(self, target: str, *, out_dir: Path | None = None,
                 options: Mapping[str, Any] | None = None):
        url = urlsplit(target)
        refuse_secrets(url, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
        if target != "ses" and (url.scheme != "ses" or url.path.strip("/") or url.query):
            raise DeliveryError("expected ses or ses://region", target)
        opts = take_options(SesOptions, target, options)
        self.region = url.netloc or opts.region
        self.target = f"ses://{self.region}" if url.netloc else "ses"
        self.options = opts
        self.endpoint_url = opts.endpoint_url or os.environ.get(ENDPOINT_ENV)
        self.attempts: int = max(1, opts.attempts)
        self.backoff: tuple[float, ...] = opts.backoff
        self.limiter: RateLimiter | SharedRate = RateLimiter(opts.rate, opts.burst)
        if opts.rate_store and opts.rate > 0:
            self.limiter = SharedRate(opts.rate_store, opts.rate, burst=opts.burst,
                                      name=self.target)
        self.throttle = DomainThrottle(opts.domain_rates, backoff=opts.domain_backoff)
        self.client = None

    def open(self) -> None:
        """The client; with `account_rate` and no `rate`, the account's own sending rate
        (SES drops what goes over it with a ThrottlingException, it does not queue it)."""
        new = self.client is None
        super().open()
        if new and self.options.account_rate and self.options.rate <= 0 \
                and isinstance(self.limiter, RateLimiter) and self.limiter.rate <= 0:
            quota = self.account_rate()
            if quota:
                if self.options.rate_store:
                    self.limiter = SharedRate(self.options.rate_store, quota,
                                              burst=self.options.burst, name=self.target)
                else:
                    self.limiter = RateLimiter(quota, self.options.burst)
                log.info("%s: sending at the account's rate, %g messages/s", self.target,
                         quota)

    def account_rate(self) -> float:
        """MaxSendRate of the account (SES v2 GetAccount; SES v1 GetSendQuota where v2's
        call is not answered); 0 when neither says."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return float(self.client.get_account()["SendQuota"]["MaxSendRate"])
        except (BotoCoreError, ClientError, KeyError, TypeError, ValueError) as exc:
            log.debug("%s: GetAccount: %s", self.target, exc)
        try:
            v1 = make_client("ses", target=self.target, region=self.region,
                             endpoint_url=self.endpoint_url, profile=self.options.profile,
                             config={"retries": retries(1)})
            try:
                return float(v1.get_send_quota()["MaxSendRate"])
            finally:
                v1.close()
        except (BotoCoreError, ClientError, DeliveryError, KeyError, TypeError,
                ValueError) as exc:
            log.warning("%s: cannot read the account's sending rate (%s); no rate set, "
                        "sending unthrottled", self.target, redact(str(exc)))
            return 0.0

    def close(self) -> None:
        super().close()
        if isinstance(self.limiter, SharedRate):
            self.limiter.close()

    def publish(self, delivery: Delivery) -> Outcome:
        """Send the raw message to the delivery's recipient; never raises for one bad message."""
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
        if self.options.configuration_set:
            request["ConfigurationSetName"] = self.options.configuration_set
        self.throttle.wait(to)     # its domain's own pace
        self.throttle.wait(None)   # the account's pause after a throttling error
        self.limiter.acquire()

        def log_retry(state: Any) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning("%s: customer %r: %s; retrying", self.target, delivery.customer_id,
                        getattr(error, "reason", error))

        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=backoff(self.backoff),
                            retry=retry_if_exception_type(_Retry), before_sleep=log_retry,
                            reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    outcome = self._send(request)
        except _Retry as exc:
            if exc.unreachable:
                raise DeliveryError(exc.reason, self.target) from None
            outcome = Outcome("failed", reason=f"{exc.reason} (after {self.attempts} attempts)")
        # SES throttles the account, not a domain: its pushback pauses every send here
        self.throttle.outcome(None, outcome.status, outcome.reason)
        return outcome
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, request: dict[str, Any]) -> Outcome:
        """One SendEmail call; raises _Retry only when SES certainly did not take it."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
        )

        try:
            reply = self.client.send_email(**request)
            return Outcome("sent", provider_id=reply.get("MessageId"))
        except ClientError as exc:
            code, message, status = error_parts(exc)
            if code in TARGET_ERRORS or "quota exceeded" in message.lower():
                raise DeliveryError(f"{code}: {message}", self.target) from None
            if code in THROTTLING or status == 503:
                raise _Retry(f"{code}: {message}") from None
            if status >= 500:  # SES may have queued it before failing
                return Outcome("unknown", reason=f"{code} (HTTP {status}): {message}; "
                               "not retried, it may have been sent")
            # MessageRejected, MailFromDomainNotVerifiedException, BadRequest...
            return Outcome("failed", reason=f"{code}: {message}")
        except ConnectionError as exc:  # no connection was made: nothing was sent
            raise _Retry(redact(str(exc)) or type(exc).__name__, unreachable=True) from None
        except HTTPClientError as exc:  # the request may have reached SES
            return Outcome("unknown", reason=f"{redact(str(exc))}; not retried, it may "
                           "have been sent")
        except NoCredentialsError:
            raise DeliveryError("no AWS credentials (set AWS_* variables or a profile)",
                                self.target) from None
        except BotoCoreError as exc:  # parameter validation and the like: before sending
            return Outcome("failed", reason=redact(str(exc)))


class _Retry(Exception):
    """Internal: SES did not take the request; trying again is safe."""

    def __init__(self, reason: str, *, unreachable: bool = False):
        super().__init__(reason)
        self.reason = reason
        # a connection that never opens makes the target unusable (DeliveryError)
        self.unreachable = unreachable
