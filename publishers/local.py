"""Deliver into a folder: `local` (`<out_dir>/outbox/`) or `local:/some/dir`.

Each delivery's message is written as `<name>.eml`; a delivery without a message has
its files written as `<format>/<name>.<ext>`, named like the run folder's files
(edition.naming). Writes are atomic (temporary file,
then `os.replace`), so a killed run never leaves half a file under the final name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edition.errors import DeliveryError
from edition.naming import relative_path, safe_name
from publishers.base import BasePublisher, Delivery, Outcome, TargetOptions, take_options


class LocalOptions(TargetOptions):
    fsync: bool = False   # flush every file to disk before it counts as written


class LocalPublisher(BasePublisher):
    """Writes messages (or files) into a local folder."""

    schemes = ("local",)
    forms = ("local", "local:DIR")
    options_model = LocalOptions
    channel = "files"

    def __init__(self, target: str, *, out_dir: Path | None = None,
                 options: Mapping[str, Any] | None = None):
        scheme, colon, where = target.partition(":")
        if scheme != "local" or (colon and not where.strip()):
            raise DeliveryError("expected local or local:DIR", target)
        self.target = target
        self.fsync: bool = take_options(LocalOptions, target, options).fsync
        self.out_dir = Path(out_dir) if out_dir is not None else Path.cwd()
        self.folder = Path(where).expanduser() if where else self.out_dir / "outbox"

    @classmethod
    def place(cls, target: str) -> str:
        """`local:` + the folder's absolute path: one folder is one channel however it
        is written; `local` (the run folder's outbox) is its own."""
        _, colon, where = target.partition(":")
        return "local:" + str(Path(where).expanduser().resolve()) if colon else "local"

    def open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create {self.folder}: {exc.strerror}"
            raise DeliveryError(msg, self.target) from None
        self._root = self.folder.resolve()
        # provider_id is relative to the run folder when the outbox lives inside it
        # (like the manifest's file paths), else relative to the outbox itself.
        out = self.out_dir.resolve()
        self._base = out if self._root.is_relative_to(out) else self._root

    def publish(self, delivery: Delivery) -> Outcome:
        """Write the delivery's message, or its files when there is no message."""
        if not hasattr(self, "_root"):
            self.open()
        name = safe_name(delivery.customer_id)
        if delivery.eml is not None:
            items = [(self._root / f"{name}.eml", delivery.eml)]
        else:
            items = [
                (self._root / relative_path(fmt, delivery.customer_id), data)
                for fmt, (_key, data, _ctype) in sorted(delivery.files.items())
            ]
        if not items:
            return Outcome("failed", reason="nothing to deliver: no message and no files")
        written = []
        for path, data in items:
            self._write(path, data)
            written.append(path.relative_to(self._base).as_posix())
        return Outcome("sent", provider_id=" ".join(written))

    def _write(self, path: Path, data: bytes) -> None:
        # Safe names cannot leave the folder; checked anyway because the guarantee matters.
        if not path.resolve().is_relative_to(self._root):
            raise DeliveryError(f"refusing to write outside {self._root}: {path}", self.target)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise DeliveryError(f"cannot write {path}: {exc.strerror}", self.target) from None
