"""Deliver by SMTP: `smtp://host:port` (`?starttls=1` or option `starttls`) and `smtps://`.

Connections are opened once and reused for many messages; `connections=N` lets N
threads send at once, each on its own connection. Login comes from the environment
(`EDITION_SMTP_USERNAME`, `EDITION_SMTP_PASSWORD`), never from the target string.

Exactly-once: a message is retried only when the server cannot have accepted it (a
4xx reply, or a connection that broke before the end-of-data marker was handed to the
socket). If the connection breaks after that and before the final reply, the outcome
is `unknown` and the message is not retried.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import logging
import os
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from edition.content.plugins import EMAIL, Delays
from edition.errors import DeliveryError
from edition.send.bounces import smtp_severity
from edition.send.rate import DomainThrottle, SharedRate
from publishers.base import (
    BasePublisher,
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

log = logging.getLogger("edition.publish.smtp")

USERNAME_ENV = "EDITION_SMTP_USERNAME"
PASSWORD_ENV = "EDITION_SMTP_PASSWORD"

_PERIOD_AT_LINE_START = re.compile(rb"(?m)^\.")
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


class _ReplyReader(io.RawIOBase):
    """The connection's socket, read against the current reply's deadline.

    A socket timeout bounds each recv, not a reply: a server (or a stuck path) that
    hands over a byte now and then would keep one send, and the batch and window
    waiting on it, open for ever. Each recv here gets only what is left of the reply's
    `timeout`, so a whole reply takes at most `timeout` seconds."""

    def __init__(self, conn: _TrackingMixin):
        self._conn = conn

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        sock = self._conn.sock  # type: ignore[attr-defined]
        left = self._conn.reply_deadline - time.monotonic()
        if sock is None:
            raise OSError("not connected")
        if left <= 0:
            raise TimeoutError("no complete reply within the timeout")
        sock.settimeout(min(self._conn.timeout, left))  # type: ignore[attr-defined]
        return int(sock.recv_into(buffer))


class _TrackingMixin:
    """Records whether the whole message, end marker included, reached the socket."""

    body_sent = False
    final_reply: tuple[int, bytes] = (0, b"")
    messages = 0
    reply_deadline = 0.0

    def getreply(self) -> tuple[int, bytes]:
        """smtplib's getreply, the whole reply bounded by `timeout` (see _ReplyReader)."""
        if self.file is None and self.sock is not None:  # type: ignore[attr-defined]
            # a new one after STARTTLS too: smtplib drops `file` when the socket changes
            self.file = io.BufferedReader(_ReplyReader(self))
        self.reply_deadline = time.monotonic() + self.timeout  # type: ignore[attr-defined]
        try:
            return super().getreply()  # type: ignore[misc,no-any-return]
        finally:
            if self.sock is not None:  # type: ignore[attr-defined]
                with contextlib.suppress(OSError):
                    self.sock.settimeout(self.timeout)  # type: ignore[attr-defined]

    def data(self, msg: bytes) -> tuple[int, bytes]:  # same steps as smtplib.SMTP.data
        self.putcmd("data")  # type: ignore[attr-defined]
        code, repl = self.getreply()  # type: ignore[attr-defined]
        if code != 354:
            raise smtplib.SMTPDataError(code, repl)
        payload = _PERIOD_AT_LINE_START.sub(b"..", msg)
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        # send() raises before returning if any byte stayed unsent, and the end marker
        # is the last thing sent: until it returns the server cannot have accepted.
        self.send(payload + b".\r\n")  # type: ignore[attr-defined]
        self.body_sent = True
        self.final_reply = self.getreply()  # type: ignore[attr-defined]
        return self.final_reply


class _SMTP(_TrackingMixin, smtplib.SMTP):
    pass


class _SMTPS(_TrackingMixin, smtplib.SMTP_SSL):
    pass


_Conn = _SMTP | _SMTPS


class _Retry(Exception):
    """Internal: this attempt failed in a way that is safe to retry."""

    def __init__(self, reason: str, reply: bool):
        super().__init__(reason)
        self.reason = reason
        # A server reply (4xx) exhausting the attempts fails the delivery; a connection
        # that keeps breaking makes the target unusable (DeliveryError).
        self.reply = reply


class SmtpOptions(TargetOptions):
    starttls: bool = False
    rate: float = 0.0          # messages per second over all connections; 0 = unlimited
    burst: int = 1
    # one rate for every worker of the send: a postgresql:// URL (workers on many
    # machines) or a file (processes of one machine) holding the shared bucket
    rate_store: str | None = None
    domain_rates: dict[str, float] = Field(default_factory=dict)  # messages/s per domain
    domain_backoff: float = 1.0    # first pause (s) of a domain after a 421/4xx; doubles
    connections: int = 1
    timeout: float = 30.0      # seconds: connecting, each whole reply, each send
    attempts: int = 3          # tries per message, the first included
    backoff: Delays = (0.2, 0.5, 1.0)
    max_per_connection: int = 0    # reconnect after this many messages; 0 = never
    mail_from: str | None = None   # envelope sender (bounce address); default: From
    local_hostname: str | None = None
    cafile: str | None = None      # CA bundle to verify the server's certificate
    plaintext_auth: bool = False   # allow login without TLS to a non-loopback host


class SmtpPublisher(BasePublisher):
    """SMTP/SMTPS delivery over a small pool of reused connections; thread-safe."""

    schemes = ("smtp", "smtps")
    forms = ("smtp://host:port", "smtps://host:port")
    options_model = SmtpOptions
    channel = EMAIL
    needs_email = True
    dkim = True     # signed here; SES signs its own

    def __init__(self, target: str, *, out_dir: Path | None = None,
                 options: Mapping[str, Any] | None = None):
        url = urlsplit(target)
        refuse_secrets(url, f"{USERNAME_ENV} and {PASSWORD_ENV}")
        if url.scheme not in {"smtp", "smtps"} or not url.hostname or \
                url.path not in ("", "/") or url.fragment:
            raise DeliveryError("expected smtp://host:port or smtps://host:port", target)
        try:
            port = url.port
        except ValueError:
            raise DeliveryError("bad port", target) from None
        self.implicit_tls = url.scheme == "smtps"
        self.host = url.hostname
        self.port = port or (465 if self.implicit_tls else 25)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.target = f"{url.scheme}://{host}:{self.port}" + (f"?{url.query}" if url.query else "")
        merged = dict(parse_qsl(url.query))
        merged.update(options or {})
        opts = take_options(SmtpOptions, self.target, merged)
        self.starttls: bool = opts.starttls and not self.implicit_tls
        self.timeout: float = opts.timeout
        self.attempts: int = max(1, opts.attempts)
        self.backoff: tuple[float, ...] = opts.backoff
        self.max_per_connection: int = opts.max_per_connection
        self.mail_from: str | None = opts.mail_from
        self.local_hostname: str | None = opts.local_hostname
        self.cafile: str | None = opts.cafile
        self.connections: int = max(1, opts.connections)
        self.limiter: RateLimiter | SharedRate = RateLimiter(opts.rate, opts.burst)
        if opts.rate_store and opts.rate > 0:
            self.limiter = SharedRate(opts.rate_store, opts.rate, burst=opts.burst,
                                      name=self.target)
        self.throttle = DomainThrottle(opts.domain_rates, backoff=opts.domain_backoff)
        self._plaintext_auth: bool = opts.plaintext_auth
        if self.mail_from is not None and clean_address(self.mail_from) is None:
            raise DeliveryError("option mail_from is not a valid address", self.target)
        self._slots = threading.BoundedSemaphore(self.connections)
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self.connects = 0  # connections opened so far (for reports and tests)

    # --- connections ---------------------------------------------------------------------

    def open(self) -> None:
        """Open the first connection now, so a wrong host or login fails before any send."""
        conn = self._connect_with_retries()
        with self._lock:
            self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _quit(conn)
        if isinstance(self.limiter, SharedRate):
            self.limiter.close()

    def _credentials(self) -> tuple[str, str] | None:
        user = os.environ.get(USERNAME_ENV)
        if not user:
            return None
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            raise DeliveryError(f"{USERNAME_ENV} is set but {PASSWORD_ENV} is not", self.target)
        encrypted = self.implicit_tls or self.starttls
        if not encrypted and not self._plaintext_auth and not _is_loopback(self.host):
            raise DeliveryError(
                "refusing to send the SMTP password unencrypted; use smtps:// or "
                "?starttls=1 (or option plaintext_auth: true)",
                self.target,
            )
        return user, password

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)

    def _connect(self) -> _Conn:
        """One new, greeted, authenticated connection. Raises _Retry or DeliveryError."""
        credentials = self._credentials()
        conn: _Conn | None = None
        try:
            if self.implicit_tls:
                conn = _SMTPS(self.host, self.port, self.local_hostname, timeout=self.timeout,
                              context=self._tls_context())
            else:
                conn = _SMTP(self.host, self.port, self.local_hostname, timeout=self.timeout)
            with self._lock:
                self.connects += 1
            conn.ehlo()
            if self.starttls:
                conn.starttls(context=self._tls_context())
                conn.ehlo()
            if credentials:
                conn.login(*credentials)
            return conn
        except smtplib.SMTPAuthenticationError as exc:
            _drop(conn)
            # the reply text is not shown: servers echo the login (base64) back in it
            reason = (f"login refused by the server ({exc.smtp_code}); check "
                      f"{USERNAME_ENV} and {PASSWORD_ENV}")
            if 400 <= exc.smtp_code < 500:
                raise _Retry(reason, reply=False) from None
            raise DeliveryError(reason, self.target) from None
        except smtplib.SMTPNotSupportedError as exc:
            _drop(conn)
            raise DeliveryError(f"server does not support it: {exc}", self.target) from None
        except ssl.SSLCertVerificationError as exc:
            _drop(conn)
            raise DeliveryError(f"TLS certificate rejected: {exc.verify_message}",
                                self.target) from None
        except smtplib.SMTPResponseException as exc:
            _drop(conn)
            reason = f"connection refused by server: {_reply(exc.smtp_code, exc.smtp_error)}"
            if 400 <= exc.smtp_code < 500 or exc.smtp_code == -1:
                raise _Retry(reason, reply=False) from None
            raise DeliveryError(reason, self.target) from None
        except (OSError, smtplib.SMTPException) as exc:
            _drop(conn)
            raise _Retry(f"cannot connect: {_describe(exc)}", reply=False) from None

    def _retrying(self, what: str) -> Retrying:
        """Retries of what raised _Retry (safe to try again), with the target's backoff."""

        def log_retry(state: Any) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning("%s: %s: %s; retrying", self.target, what,
                        redact(getattr(error, "reason", str(error))))

        return Retrying(stop=stop_after_attempt(self.attempts), wait=backoff(self.backoff),
                        retry=retry_if_exception_type(_Retry), before_sleep=log_retry,
                        reraise=True)

    def _connect_with_retries(self) -> _Conn:
        try:
            for attempt in self._retrying("connecting"):
                with attempt:
                    return self._connect()
        except _Retry as exc:
            raise DeliveryError(redact(exc.reason) or "", self.target) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # --- sending -------------------------------------------------------------------------

    def publish(self, delivery: Delivery) -> Outcome:
        """Send the delivery's message to its recipient; never raises for one bad message."""
        if delivery.eml is None:
            return Outcome("failed", reason="no email message for this customer")
        to = clean_address(delivery.recipient)
        if to is None:
            return Outcome("failed", reason="missing or invalid recipient address")
        sender = self.mail_from or sender_address(delivery.eml)
        if sender is None:
            return Outcome("failed", reason="the message has no valid From address")
        body = _LINE_ENDS.sub(b"\r\n", delivery.eml)
        self.throttle.wait(to)  # the recipient's domain: its own pace, or a pause
        self.limiter.acquire()
        self._slots.acquire()
        keep: _Conn | None = None
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        try:
            outcome, keep = self._send(conn, sender, to, body, delivery)
            self.throttle.outcome(to, outcome.status, outcome.reason)
            return outcome
        except BaseException:
            _drop(conn)  # it may be mid-transaction: never hand it to the next message
            raise
        finally:
            if keep is not None:
                with self._lock:
                    self._idle.append(keep)
            self._slots.release()

    def _send(self, conn: _Conn | None, sender: str, to: str, body: bytes,
              delivery: Delivery) -> tuple[Outcome, _Conn | None]:
        """Attempt loop for one message; returns the outcome and the connection to keep."""
        held = [conn]
        try:
            for attempt in self._retrying(f"customer {delivery.customer_id!r}"):
                with attempt:
                    outcome = self._attempt(held, sender, to, body, delivery)
        except _Retry as exc:
            reason = f"{redact(exc.reason) or ''} (after {self.attempts} attempts)"
            if exc.reply:
                return Outcome("failed", reason=reason), _keep_if_clean(held[0])
            raise DeliveryError(reason, self.target) from None
        conn = held[0]
        if conn is None or outcome.status == "unknown" or conn.sock is None:
            return outcome, None
        if self.max_per_connection and conn.messages >= self.max_per_connection:
            _quit(conn)
            return outcome, None
        return outcome, conn

    def _attempt(self, held: list[_Conn | None], sender: str, to: str, body: bytes,
                 delivery: Delivery) -> Outcome:
        """One try on the held connection (a new one if none); `held` keeps what is left."""
        reused = held[0] is not None and held[0].messages > 0
        for fresh in (False, True):
            if held[0] is None:
                held[0] = self._connect()
            try:
                return self._transaction(held[0], sender, to, body, delivery)
            except _Retry as exc:
                held[0] = _keep_if_clean(held[0])
                # A pooled connection the server closed while idle is normal: reconnect
                # at once, without spending an attempt (once per message).
                if exc.reply or held[0] is not None or not reused or fresh:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _transaction(self, conn: _Conn, sender: str, to: str, body: bytes,
                     delivery: Delivery) -> Outcome:
        """One MAIL/RCPT/DATA exchange; raises _Retry when it is safe to try again."""
        conn.body_sent, conn.final_reply = False, (0, b"")
        options = []
        if not body.isascii() and conn.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if not (sender.isascii() and to.isascii()):
            if not conn.has_extn("smtputf8"):
                return Outcome("failed", reason="the server does not accept non-ASCII addresses "
                               "(no SMTPUTF8)")
            options.append("SMTPUTF8")
        try:
            conn.sendmail(sender, [to], body, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients.get(to, (-1, b"recipient refused"))
            return _by_code(conn, code, text)
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, 421...
            if conn.body_sent and 200 <= exc.smtp_code < 300:
                conn.messages += 1  # accepted with an unusual 2xx (smtplib wants 250)
                return Outcome("sent", provider_id=_reply(exc.smtp_code, exc.smtp_error))
            if conn.body_sent and not 400 <= exc.smtp_code < 600:
                return _unknown(conn, f"unexpected final reply {exc.smtp_code}")
            return _by_code(conn, exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPException) as exc:  # dropped, reset, timed out
            if conn.body_sent:
                return _unknown(conn, _describe(exc))
            _drop(conn)
            raise _Retry(f"connection lost: {_describe(exc)}", reply=False) from None
        except Exception as exc:  # a bug or an odd message must not stop the whole run
            log.error("%s: customer %r: unexpected error", self.target, delivery.customer_id,
                      exc_info=True)
            if conn.body_sent:
                return _unknown(conn, _describe(exc))
            _drop(conn)
            return Outcome("failed", reason=redact(f"unexpected error: {_describe(exc)}"))
        conn.messages += 1
        code, text = conn.final_reply
        reply = _reply(code, text) if text else ""
        return Outcome("sent", provider_id=reply or delivery.message_id)


def _by_code(conn: _Conn, code: int, text: bytes | str) -> Outcome:
    """Turn an SMTP error reply into `failed` (5xx) or a retry (4xx and anything else)."""
    reason = _reply(code, text)
    if 500 <= code < 600:
        _rset(conn)
        # a refusal at send time is a bounce: 550 5.1.1 is a hard one (listmonk #2623)
        return Outcome("failed", reason=redact(reason), bounce=smtp_severity(code, reason))
    _rset(conn)
    raise _Retry(reason, reply=True)


def _unknown(conn: _Conn, why: str) -> Outcome:
    _drop(conn)
    return Outcome(
        "unknown",
        reason=redact(f"connection lost after the message was sent, before the server "
                      f"confirmed it ({why}); not retried, it may have been delivered"),
    )


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


def _rset(conn: _Conn) -> None:
    """Leave the connection ready for the next MAIL, or close it if it is not."""
    if conn.sock is None:
        return
    try:
        conn.rset()
    except (OSError, smtplib.SMTPException):
        _drop(conn)


def _keep_if_clean(conn: _Conn | None) -> _Conn | None:
    return conn if conn is not None and conn.sock is not None else None


def _drop(conn: _Conn | None) -> None:
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()


def _quit(conn: _Conn) -> None:
    try:
        if conn.sock is not None:
            conn.sock.settimeout(min(conn.timeout, 5.0))  # type: ignore[arg-type]
            conn.quit()
    except (OSError, smtplib.SMTPException):
        pass
    finally:
        _drop(conn)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
