"""Run folders in S3: `--out s3://bucket/prefix` gives the same layout as objects.

Workers upload a batch's files in parallel (one client per process, a small thread
pool), with their content types; the main process puts run.json when the run starts and
manifest.jsonl, versions.json, report.md and run.json when it ends. One run at a time
holds the folder through its lock object (publishers.s3_lock: a lease, renewed; a dead
holder's lock is taken over).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from edition.errors import RunError
from edition.naming import CONTENT_TYPES, EXTENSIONS
from edition.run.folder import LOCK_FILE
from publishers.aws import error_parts, make_client, retries
from publishers.base import redact
from publishers.s3_lock import Conflict, Lease, take

ENDPOINT_ENV = "EDITION_S3_ENDPOINT_URL"
UPLOADS = 8  # parallel PUTs per process: enough to hide the round trips, few connections
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict"}
_TYPES = {".html": CONTENT_TYPES["html"], ".txt": CONTENT_TYPES["text"],
          ".eml": CONTENT_TYPES["eml"], ".pdf": CONTENT_TYPES["pdf"],
          ".jsonl": "application/x-ndjson", ".json": "application/json",
          ".md": "text/markdown; charset=utf-8"}


class S3Folder:
    """A run folder under an S3 prefix; `write` queues, `flush` uploads (parallel)."""

    def __init__(self, location: str):
        url = urlsplit(location)
        if url.scheme != "s3" or not url.netloc or "@" in url.netloc or url.query:
            raise RunError("--out must be s3://bucket/prefix (credentials come from the "
                           "environment or an AWS profile)", location)
        self.location = location.rstrip("/")
        self.bucket = url.netloc
        self.prefix = url.path.strip("/")
        self.written: set[str] = set()
        self._queue: list[tuple[str, bytes]] = []
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._held: Lease | None = None     # the lock, while this object holds it
        self.taken_over: dict[str, Any] | None = None   # the dead holder we replaced

    # -- the writer interface (edition.run.folder.FileWriter's) -------------------------

    def write(self, relative: str, data: bytes) -> None:
        if relative in self.written:
            raise RunError(f"two customers would write the same file: {relative}")
        if relative.startswith("/") or "/../" in f"/{relative}/" or "\\" in relative:
            raise RunError(f"refusing to write outside the run folder: {relative!r}")
        self._queue.append((relative, data))
        self.written.add(relative)

    def flush(self) -> None:
        """Upload what `write` queued; a batch is done only when its files are stored."""
        queue, self._queue = self._queue, []
        if not queue:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(UPLOADS, thread_name_prefix="edition-s3")
        for future in [self._pool.submit(self.put, rel, data) for rel, data in queue]:
            future.result()

    # -- objects -----------------------------------------------------------------------

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(
                "s3", target=self.location, region=None,
                endpoint_url=os.environ.get(ENDPOINT_ENV), profile=None,
                config={"retries": retries(5),
                        "max_pool_connections": UPLOADS + 2})
        return self._client

    def put(self, relative: str, data: bytes, **extra: Any) -> str:
        """Store one object; its ETag."""
        from botocore.exceptions import BotoCoreError, ClientError

        if self._held is not None and self._held.lost:
            raise RunError(f"this run lost {self.location} to another run (its lock was "
                           f"not renewed within {self._held.seconds:g} s); nothing more is "
                           f"written", self.location)
        ctype = _TYPES.get(os.path.splitext(relative)[1], "application/octet-stream")
        try:
            reply = self.client().put_object(Bucket=self.bucket, Key=self.key(relative),
                                             Body=data, ContentType=ctype, **extra)
        except ClientError as exc:
            code, message, _ = error_parts(exc)
            if code in _CONFLICT:
                raise Conflict(code) from None
            raise RunError(f"cannot write {self.key(relative)}: {code}: {message}",
                           self.location) from None
        except BotoCoreError as exc:
            raise RunError(f"cannot write {self.key(relative)}: {redact(str(exc))}",
                           self.location) from None
        return str(reply.get("ETag") or "")

    def get(self, relative: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply = self.client().get_object(Bucket=self.bucket, Key=self.key(relative))
        except ClientError as exc:
            if error_parts(exc)[0] in {"NoSuchKey", "404"}:
                return None
            raise RunError(f"cannot read {self.key(relative)}: {error_parts(exc)[1]}",
                           self.location) from None
        except BotoCoreError as exc:  # no credentials, no endpoint: the first call says so
            raise self._unreachable("read", relative, exc) from None
        return reply["Body"].read()

    def exists(self, relative: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().head_object(Bucket=self.bucket, Key=self.key(relative))
        except ClientError as exc:
            if error_parts(exc)[2] == 404 or error_parts(exc)[0] in {"404", "NoSuchKey"}:
                return False
            raise
        except BotoCoreError as exc:
            raise self._unreachable("read", relative, exc) from None
        return True

    def _unreachable(self, action: str, relative: str, exc: Exception) -> RunError:
        from botocore.exceptions import NoCredentialsError

        hint = (" (credentials come from the environment, e.g. AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or an AWS profile)"
                if isinstance(exc, NoCredentialsError) else "")
        return RunError(f"cannot {action} {self.key(relative)}: {redact(str(exc))}{hint}",
                        self.location)

    def read_json(self, relative: str) -> dict[str, Any] | None:
        """A small JSON object (run.json), or None when absent or not a JSON object."""
        data = self.get(relative)
        try:
            value = json.loads(data) if data is not None else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def delete(self, relative: str) -> None:
        self.client().delete_object(Bucket=self.bucket, Key=self.key(relative))

    def _relatives(self) -> list[str]:
        """Every object under the prefix, relative to it."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = f"{self.prefix}/" if self.prefix else ""
        try:
            paginator = self.client().get_paginator("list_objects_v2")
            return [o["Key"][len(prefix):]
                    for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                    for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise RunError(f"cannot list {self.location}: {_reason(exc)}",
                           self.location) from None

    def _delete_many(self, relatives: list[str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for start in range(0, len(relatives), 1000):   # DeleteObjects takes 1,000 keys
            keys = [{"Key": self.key(rel)} for rel in relatives[start:start + 1000]]
            try:
                self.client().delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
            except (BotoCoreError, ClientError) as exc:
                raise RunError(f"cannot delete objects under {self.location}: "
                               f"{_reason(exc)}", self.location) from None

    def clear(self) -> None:
        """Every object under the prefix gone (for --overwrite), but the lock we hold."""
        self._delete_many([rel for rel in self._relatives() if rel != LOCK_FILE])

    def remove_unlisted(self, listed: set[str]) -> list[str]:
        """Delete customer files no manifest row names (a dead run's batches that the run
        finishing its folder did not make again); like edition.run.folder.remove_unlisted."""
        folders = tuple(f"{fmt}/" for fmt in EXTENSIONS)
        stray = [rel for rel in self._relatives()
                 if rel.startswith(folders) and rel not in listed]
        self._delete_many(stray)
        return stray

    # -- the lock (publishers.s3_lock) ---------------------------------------------------

    def lock(self, holder: dict[str, Any]) -> None:
        """Hold the folder (a dead holder's lock is taken over); FolderBusy names a live
        one. `holder`: run id, host, pid, pid start (edition.run.folder.owner)."""
        self._held = take(self, holder)
        self.taken_over = self._held.replaced

    def unlock(self) -> None:
        """Let go: stop renewing and delete the lock, if it is still ours."""
        held, self._held = self._held, None
        if held is not None:
            held.release()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _reason(exc: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code, message, _ = error_parts(exc)
        return f"{code}: {message}"
    return redact(str(exc)) or type(exc).__name__
