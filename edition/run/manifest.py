"""The manifest file: one row per customer row read, in input order (edition.outcomes
says what a row holds); written per batch, read back torn-safe by repair and resume."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edition import private
from edition.outcomes import ManifestRow

MANIFEST_NAME = "manifest.jsonl"


class ManifestWriter:
    """Appends rows to manifest.jsonl, flushed per batch (a killed run loses no whole row)."""

    def __init__(self, path: Path, *, append: bool = False):
        self.path = path
        # private.open_file: customer data, readable by its owner only
        self.handle = open(  # noqa: SIM115 (kept open across batches; close() closes it)
            private.open_file(path, append=append), "w", encoding="utf-8")

    def write(self, rows: Iterable[ManifestRow]) -> None:
        try:
            self.handle.write("".join(row.to_json() + "\n" for row in rows))
            self.handle.flush()
        except OSError as exc:  # a full disk: name the file (the write does not)
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.handle.closed:
            return
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        finally:
            with contextlib.suppress(OSError):  # what could not be flushed is lost anyway
                self.handle.close()


def read_rows(path: Path, *, cut_torn: bool = False) -> tuple[list[dict[str, Any]], bool]:
    """The complete rows of a manifest and whether its last line was torn.

    A run killed mid-write can leave half a line at the end; with `cut_torn` it is cut
    off the file so the next writer appends after the last whole row.
    """
    if not path.exists():
        return [], False
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    good = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
        good += len(line)
    torn = good != len(data)
    if torn and cut_torn:
        with path.open("r+b") as handle:
            handle.truncate(good)
    return rows, torn


def truncate_rows(path: Path, keep: int) -> None:
    """Keep the first `keep` lines of a manifest, drop the rest."""
    data = path.read_bytes()
    end = 0
    for _ in range(keep):
        end = data.index(b"\n", end) + 1
    with path.open("r+b") as handle:
        handle.truncate(end)
