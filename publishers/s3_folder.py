"""Run folders in S3: `--out s3://bucket/prefix` gives the same layout as objects.

Workers upload a batch's files in parallel (one client per process, a small thread
pool), with their content types; the main process puts manifest.jsonl, versions.json,
report.md and run.json when the run ends, and holds the folder with a lock object made
by a conditional PUT (If-None-Match), so a second run on the prefix is refused.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from edition.errors import FolderBusy, RunError
from edition.naming import CONTENT_TYPES
from publishers.aws import error_parts, make_client, retries
from publishers.base import redact

ENDPOINT_ENV = "EDITION_S3_ENDPOINT_URL"
UPLOADS = 8  # parallel PUTs per process: enough to hide the round trips, few connections
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

    # -- the writer interface (edition.runfolder.FileWriter's) -------------------------

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

    def put(self, relative: str, data: bytes, **extra: Any) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        ctype = _TYPES.get(os.path.splitext(relative)[1], "application/octet-stream")
        try:
            self.client().put_object(Bucket=self.bucket, Key=self.key(relative), Body=data,
                                     ContentType=ctype, **extra)
        except ClientError as exc:
            code, message, _ = error_parts(exc)
            if code in {"PreconditionFailed", "ConditionalRequestConflict"}:
                raise FolderBusy(f"another run holds {self.location} (its lock object "
                                 f"{self.key(relative)} exists)", self.location) from None
            raise RunError(f"cannot write {self.key(relative)}: {code}: {message}",
                           self.location) from None
        except BotoCoreError as exc:
            raise RunError(f"cannot write {self.key(relative)}: {redact(str(exc))}",
                           self.location) from None

    def get(self, relative: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            reply = self.client().get_object(Bucket=self.bucket, Key=self.key(relative))
        except ClientError as exc:
            if error_parts(exc)[0] in {"NoSuchKey", "404"}:
                return None
            raise RunError(f"cannot read {self.key(relative)}: {error_parts(exc)[1]}",
                           self.location) from None
        return reply["Body"].read()

    def exists(self, relative: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client().head_object(Bucket=self.bucket, Key=self.key(relative))
        except ClientError as exc:
            if error_parts(exc)[2] == 404 or error_parts(exc)[0] in {"404", "NoSuchKey"}:
                return False
            raise
        return True

    def delete(self, relative: str) -> None:
        self.client().delete_object(Bucket=self.bucket, Key=self.key(relative))

    def clear(self) -> None:
        """Every object under the prefix, gone (for --overwrite)."""
        paginator = self.client().get_paginator("list_objects_v2")
        prefix = f"{self.prefix}/" if self.prefix else ""
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.client().delete_objects(Bucket=self.bucket, Delete={"Objects": keys})

    def lock(self, holder: bytes) -> None:
        """Take the folder: a lock object that only one PUT can create."""
        self.put(".edition.lock", holder, IfNoneMatch="*")

    def unlock(self) -> None:
        self.delete(".edition.lock")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
