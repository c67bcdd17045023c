"""Content that travels with the work: a campaign's files, packed once, unpacked by workers.

A worker on another machine has no campaign file, no templates and no modules. The main
process (the CLI or the flow) loads and checks the campaign once, packs every file the
run reads from the content root (campaigns/, templates/, articles/, offers/, greetings/
and the campaign's suppression lists) into a Bundle with a digest, and hands the bundle
to the workers with each batch. A worker unpacks it once per digest into a private
folder and loads the Plan from there, with the same code and checks as everywhere else.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from edition.content.campaign import find_root

CONTENT = ("campaigns", "templates", "articles", "offers", "greetings")
MAX_BYTES = 64 << 20     # a content root this large is not content: refuse to pack it


@dataclass(frozen=True)
class Bundle:
    """A content root's files (relative path -> bytes) and the campaign file among them."""

    campaign: str                            # relative path of the campaign file
    files: tuple[tuple[str, bytes], ...]
    digest: str

    @classmethod
    def pack(cls, campaign_file: str | Path, extra: tuple[str | Path, ...] = ()) -> Bundle:
        """Every file a run reads from the campaign's content root (plus `extra` files
        under it, e.g. suppression lists)."""
        campaign_file = Path(campaign_file).resolve()
        root = find_root(campaign_file)
        files: dict[str, bytes] = {}
        size = 0
        paths = [p for folder in CONTENT if (root / folder).is_dir()
                 for p in sorted((root / folder).rglob("*")) if p.is_file()]
        paths += [Path(p).resolve() for p in extra]
        for path in paths:
            try:
                rel = path.resolve().relative_to(root).as_posix()
            except ValueError:
                continue  # outside the root: the worker is given it another way
            data = path.read_bytes()
            size += len(data)
            if size > MAX_BYTES:
                raise ValueError(f"the content root {root} holds more than "
                                 f"{MAX_BYTES >> 20} MB; keep data files out of it")
            files[rel] = data
        digest = hashlib.sha256()
        for rel, data in sorted(files.items()):
            digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        return cls(campaign_file.relative_to(root).as_posix(), tuple(sorted(files.items())),
                   digest.hexdigest()[:16])

    def unpack(self) -> Path:
        """The campaign file, in a private folder holding the bundle (once per process)."""
        with _LOCK:
            root = _UNPACKED.get(self.digest)
            if root is None or not (root / self.campaign).is_file():
                root = Path(tempfile.mkdtemp(prefix=f"edition-{self.digest}-"))
                for rel, data in self.files:
                    target = root / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                os.chmod(root, 0o700)
                _UNPACKED[self.digest] = root
        return root / self.campaign


_LOCK = threading.Lock()
_UNPACKED: dict[str, Path] = {}
