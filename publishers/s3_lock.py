"""The lock of a run folder in S3: one run at a time, and a dead run's lock taken over.

A local folder's lock is an OS lock the kernel drops when its holder dies, even on
kill -9. An object has no such owner, so the lock object `.edition.lock` names its holder
(a random id, the run, host, pid and pid start) and a lease:

- only one PUT can create it (If-None-Match: *);
- the holder renews it every lease/6 from a daemon thread (If-Match on the ETag it last
  wrote), and deletes it when the run ends (If-Match again: never another run's lock);
- a run that finds it takes it over only from a dead holder: on this host, a pid that no
  longer runs (at once, as the OS would); on another host, a lease that S3's own clock
  says has run out (the two hosts' clocks may disagree). The take-over is a PUT with
  If-Match on the ETag it judged, so of two runs that judge the same dead holder only
  one gets the folder, and a holder that renews meanwhile keeps it.

A holder that finds its lock taken (it stalled past its lease) writes nothing more.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edition.errors import FolderBusy, RunError
from edition.run.folder import LOCK_FILE, alive_here
from publishers.aws import error_parts

if TYPE_CHECKING:
    from publishers.s3_folder import S3Folder

log = logging.getLogger("edition.s3_lock")

LEASE_ENV = "EDITION_S3_LOCK_LEASE"
# seconds a holder's lock outlives its last renewal: a run that died on another host is
# taken over this long after; a holder on a slow network has five renewals to spare
DEFAULT_LEASE = 120.0
TRIES = 5   # a lock that changes under us this many times is someone else's


class Conflict(Exception):
    """A conditional PUT found the object not as it expected (S3's 412 or 409)."""


@dataclass(frozen=True)
class FoundLock:
    """The lock object as found: its holder, its ETag, seconds since it was written."""

    info: dict[str, Any]
    etag: str
    age: float

    @property
    def lease(self) -> float:
        try:
            return max(1.0, float(self.info.get("lease_seconds") or DEFAULT_LEASE))
        except (TypeError, ValueError):
            return DEFAULT_LEASE

    def dead(self) -> bool:
        """Is the holder gone? Its pid, when it ran on this host; else its lease."""
        alive = alive_here(self.info)
        if alive is not None:
            return not alive
        return self.age > self.lease

    def who(self) -> str:
        info = self.info
        return (f"run {info.get('run_id', '?')} (pid {info.get('pid', '?')} on "
                f"{info.get('host', '?')})")

    def busy(self, location: str) -> FolderBusy:
        return FolderBusy(f"{self.who()} is using {location} (its lock was renewed "
                          f"{self.age:.0f} s ago; a run that stops renewing it for "
                          f"{self.lease:g} s is taken over); wait for it to finish or "
                          f"choose another --out", location)


def take(folder: S3Folder, holder: dict[str, Any]) -> Lease:
    """Create the folder's lock, or take over a dead holder's; FolderBusy otherwise."""
    lease = lease_seconds()
    mine = {"holder": uuid.uuid4().hex, **holder, "lease_seconds": lease}
    body = json.dumps(mine).encode()
    for _ in range(TRIES):
        try:
            return Lease(folder, mine, folder.put(LOCK_FILE, body, IfNoneMatch="*"))
        except Conflict:
            pass
        found = read(folder)
        if found is None:
            continue   # released meanwhile: create it again
        if found.info.get("holder") == mine["holder"]:
            return Lease(folder, mine, found.etag)   # ours: the reply was lost, the PUT resent
        if not found.dead():
            raise found.busy(folder.location)
        try:
            etag = folder.put(LOCK_FILE, body, IfMatch=found.etag)
        except Conflict:
            continue   # renewed, released or taken by another run meanwhile: judge again
        log.warning("%s: took over the lock of %s, which is no longer running",
                    folder.location, found.who())
        return Lease(folder, mine, etag, replaced=found.info)
    raise FolderBusy(f"the lock of {folder.location} keeps changing: another run is taking "
                     f"it", folder.location)


def read(folder: S3Folder) -> FoundLock | None:
    """The lock object, or None when there is none."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = folder.key(LOCK_FILE)
    try:
        reply = folder.client().get_object(Bucket=folder.bucket, Key=key)
        data = reply["Body"].read()
    except ClientError as exc:
        if error_parts(exc)[0] in {"NoSuchKey", "404"}:
            return None
        raise RunError(f"cannot read {key}: {error_parts(exc)[1]}", folder.location) from None
    except BotoCoreError as exc:
        raise RunError(f"cannot read {key}: {exc}", folder.location) from None
    try:
        info = json.loads(data)
    except ValueError:
        info = {}
    # S3's clock at both ends: when it stored the lock, and now
    headers = reply.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    now = _http_date(headers.get("date")) or dt.datetime.now(dt.UTC)
    written = reply.get("LastModified") or now
    return FoundLock(info if isinstance(info, dict) else {}, str(reply.get("ETag") or ""),
                     max(0.0, (now - written).total_seconds()))


class Lease:
    """A lock this process holds, renewed every lease/6 until `release`."""

    def __init__(self, folder: S3Folder, body: dict[str, Any], etag: str, *,
                 replaced: dict[str, Any] | None = None):
        self.folder = folder
        self.body = body
        self.etag = etag
        self.seconds = float(body["lease_seconds"])
        self.replaced = replaced   # the dead holder whose lock this one took over
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True,
                                        name="edition-s3-lock")
        self._thread.start()

    def release(self) -> None:
        """Stop renewing; delete the lock if it is still ours."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._stop.set()
        self._thread.join(60)
        if self.lost:
            return
        folder = self.folder
        try:
            folder.client().delete_object(Bucket=folder.bucket, Key=folder.key(LOCK_FILE),
                                          IfMatch=self.etag)
        except (BotoCoreError, ClientError) as exc:  # gone, or another run's by now
            log.warning("%s: lock not deleted: %s", folder.location, exc)

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 6) and not self.lost:
            try:
                self._renew_once()
            except RunError as exc:  # S3 unreachable for now: the lease has slack
                log.warning("%s: could not renew the lock: %s", self.folder.location, exc)

    def _renew_once(self) -> None:
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        body = json.dumps(self.body | {"renewed": stamp}).encode()
        try:
            self.etag = self.folder.put(LOCK_FILE, body, IfMatch=self.etag)
            return
        except Conflict:
            pass
        found = read(self.folder)
        if found is not None and found.info.get("holder") == self.body["holder"]:
            # our PUT took; botocore resent it after a lost reply, and the resend found
            # the ETag changed by that very PUT
            self.etag = found.etag
            return
        self.lost = True   # another run judged this one dead and took the folder
        log.error("%s: another run took this run's folder (its lock was not renewed "
                  "within %g s); nothing more is written", self.folder.location,
                  self.seconds)


def lease_seconds() -> float:
    """EDITION_S3_LOCK_LEASE, else DEFAULT_LEASE."""
    try:
        return max(1.0, float(os.environ.get(LEASE_ENV) or DEFAULT_LEASE))
    except ValueError:
        raise RunError(f"{LEASE_ENV} must be a number of seconds, not "
                       f"{os.environ.get(LEASE_ENV)!r}") from None


def _http_date(value: str | None) -> dt.datetime | None:
    try:
        return email.utils.parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None
