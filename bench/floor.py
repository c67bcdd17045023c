"""The floor: what writing one customer's edition costs when nothing else is done.

Per customer the loop only fills a version's text (the greeting's name and the
customer's id, the holes the engine fills too), base64-encodes the text and the HTML for
the .eml (76-character lines, CRLF, as renderers/eml writes them) and writes three files
atomically, the way edition.run.folder.FileWriter does (temp file, os.write, rename;
folders made once). No segments, no selection, no manifest, no content hash: whatever
the engine spends beyond this loop is the distance to the floor.

The versions are real editions: the html and text files of a finished run folder
(`--sample`), with each sample customer's first name and id turned back into holes.

    .venv/bin/python bench/floor.py --customers data/customers.csv --sample out/RUN \
        [--processes 1,2] [--out /dev/shm/floor]
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import multiprocessing as mp
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BOUNDARY = "=_floor_0123456789abcdef"


@dataclass
class Version:
    """A rendered edition cut at its holes: parts[0] hole[0] parts[1] … parts[-1]."""

    html: list[str]
    html_holes: list[str]
    text: list[str]
    text_holes: list[str]


def _cut(document: str, values: dict[str, str]) -> tuple[list[str], list[str]]:
    by_value = {v: k for k, v in values.items() if v}
    pattern = re.compile("|".join(rf"\b{re.escape(v)}\b" for v in sorted(by_value, key=len,
                                                                          reverse=True)))
    parts, holes, last = [], [], 0
    for match in pattern.finditer(document):
        parts.append(document[last:match.start()])
        holes.append(by_value[match.group(0)])
        last = match.end()
    parts.append(document[last:])
    return parts, holes


def load_versions(sample: Path, customers: Path, count: int = 60) -> list[Version]:
    """Up to `count` versions from a run folder's html/ and text/ files."""
    versions = []
    with customers.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            page = sample / "html" / f"{row['id']}.html"
            plain = sample / "text" / f"{row['id']}.txt"
            if len(row["first_name"]) < 3 or not (page.exists() and plain.exists()):
                continue
            esc = {"first_name": html.escape(row["first_name"]), "id": row["id"]}
            h_parts, h_holes = _cut(page.read_text(encoding="utf-8"), esc)
            t_parts, t_holes = _cut(plain.read_text(encoding="utf-8"),
                                    {"first_name": row["first_name"], "id": row["id"]})
            versions.append(Version(h_parts, h_holes, t_parts, t_holes))
            if len(versions) == count:
                break
    if not versions:
        raise SystemExit(f"no sample editions in {sample} for the customers of {customers}")
    return versions


def read_rows(customers: Path, limit: int | None = None) -> list[dict[str, str]]:
    with customers.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows[:limit] if limit else rows


def _fill(parts: list[str], holes: list[str], values: dict[str, str]) -> str:
    out = [parts[0]]
    for hole, part in zip(holes, parts[1:], strict=True):
        out += (values[hole], part)
    return "".join(out)


def _write(folder: str, name: str, data: bytes) -> None:
    temp = f"{folder}/.{name}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0),
                 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(temp, f"{folder}/{name}")


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def loop(versions: list[Version], rows: list[dict[str, str]], out: Path) -> int:
    """The floor loop over `rows`; returns how many customers it wrote."""
    folders = {kind: str(out / kind) for kind in ("html", "text", "eml")}
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    for i, row in enumerate(rows):
        version = versions[i % len(versions)]
        cid, name = row["id"], row["first_name"]
        page = _fill(version.html, version.html_holes,
                     {"first_name": html.escape(name), "id": cid}).encode("utf-8")
        plain = _fill(version.text, version.text_holes,
                      {"first_name": name, "id": cid}).encode("utf-8")
        head = (f"Subject: {name}, your weekly edition\r\n"
                f"From: Acme Weekly <news@acme.example>\r\n"
                f"To: {name} {row['last_name']} <{row['email']}>\r\n"
                f"Message-ID: <{cid}.weekly-newsletter@acme.example>\r\n"
                f"MIME-Version: 1.0\r\n"
                f'Content-Type: multipart/alternative;\r\n boundary="{BOUNDARY}"\r\n\r\n'
                f"--{BOUNDARY}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
                f"Content-Transfer-Encoding: base64\r\n\r\n").encode()
        middle = (f"\r\n--{BOUNDARY}\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
                  f"Content-Transfer-Encoding: base64\r\n\r\n").encode("ascii")
        tail = f"\r\n--{BOUNDARY}--\r\n".encode("ascii")
        message = b"".join((head, _b64(plain), middle, _b64(page), tail))
        _write(folders["html"], f"{cid}.html", page)
        _write(folders["text"], f"{cid}.txt", plain)
        _write(folders["eml"], f"{cid}.eml", message)
    return len(rows)


def _child(versions: list[Version], rows: list[dict[str, str]], out: Path,
           ready: mp.Barrier, done: mp.Queue) -> None:
    ready.wait(120)
    start = time.perf_counter()
    loop(versions, rows, out)
    done.put(time.perf_counter() - start)


def measure(versions: list[Version], rows: list[dict[str, str]], out: Path,
            processes: int) -> float:
    """Customers per second of `processes` forked loops sharing `rows` (wall clock, from
    the moment all are ready until the last one is done)."""
    ctx = mp.get_context("fork")
    ready, done = ctx.Barrier(processes + 1), ctx.Queue()
    share = -(-len(rows) // processes)
    procs = [ctx.Process(target=_child, args=(versions, rows[i * share:(i + 1) * share],
                                              out, ready, done))
             for i in range(processes)]
    for proc in procs:
        proc.start()
    ready.wait(120)
    start = time.perf_counter()
    for _ in procs:
        done.get(timeout=600)
    seconds = time.perf_counter() - start
    for proc in procs:
        proc.join(60)
        if proc.exitcode:
            raise SystemExit(f"floor loop process failed with exit {proc.exitcode}")
    return len(rows) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=Path, required=True, help="sample-data CSV")
    parser.add_argument("--sample", type=Path, required=True,
                        help="a run folder of the same customers (html/ and text/)")
    parser.add_argument("--limit", type=int, help="only the first N customers")
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--out", type=Path, help="default: a folder in /dev/shm")
    args = parser.parse_args()
    versions = load_versions(args.sample, args.customers)
    rows = read_rows(args.customers, args.limit)
    base = args.out or Path(tempfile.mkdtemp(prefix="edition-floor-",
                                             dir="/dev/shm" if Path("/dev/shm").is_dir()
                                             else None))
    try:
        for count in (int(p) for p in args.processes.split(",") if p):
            out = base / f"p{count}"
            rate = measure(versions, rows, out, count)
            shutil.rmtree(out, ignore_errors=True)
            print(f"floor loop, {count} process(es), {len(rows):,} customers, "
                  f"{len(versions)} versions: {rate:,.0f} customers/s")
    finally:
        if args.out is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
