"""How a CSV or JSONL customer file's bytes become text: its encoding and its separator.

Spreadsheets write customer files in more than one way, and edition reads them as
they come instead of reporting "0 customer rows":

- **Separator.** Excel writes `;` wherever the decimal separator is a comma (most of
  Europe), `\\t` for "Unicode text", and some CRMs use `|`. The separator is the one of
  `, ; \\t |` that makes a column named `id` of the header (the contract requires one);
  when none does (or several do), csv.Sniffer decides on the first lines, then the most
  columns. No `id` column with any of them is preflight's error, as before.
- **Encoding.** UTF-8, with or without a byte order mark, unless a UTF-16/32 mark says
  otherwise, or `--encoding` / the campaign's `customers_encoding` names another
  (`windows-1252`, `iso-8859-15`, any Python codec). A row holding bytes its encoding
  cannot read is rejected, naming the column, and the run goes on, as for any bad row.
  When the first MiB has two or more such lines and no UTF-8 accent at all, the file is
  in another encoding altogether: the run still lists every row, then ends with exit 3
  and says so (`FileFormat.suspect`: the line, the encoding the file looks like, what
  that line reads as in it, and the two ways out, `--encoding` or `iconv -f
  WINDOWS-1252 -t UTF-8`); `validate` says the same. Rows that are plain ASCII read the
  same in either encoding, so what the run did render is right. The reverse mistake
  (UTF-8 text read with `--encoding windows-1252`, which would mail "JosÃ©") is refused
  before anything is read (exit 2).
"""

from __future__ import annotations

import codecs
import csv
import io
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from edition.audience.sources import CustomerSource, missing_file
from edition.errors import UsageError

__all__ = ["SEPARATORS", "FileFormat", "TextFileSource", "file_format"]

SEPARATORS = ",;\t|"
SAMPLE_BYTES = 1 << 20     # the encoding is judged on the first MiB
HEADER_BYTES = 64 << 10    # the separator on the first 64 KiB
SNIFF_LINES = 20
_BOMS = (  # longest first: the UTF-32 LE mark begins with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"), (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"), (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
# What a file that is not UTF-8 most likely is, in this order on a tie: Excel's "CSV"
# in Western Europe and the Americas, in Central Europe, and its "CSV (MS-DOS)".
# Measured: charset-normalizer guessed cp1250 or cp857 for short French, German and
# Spanish samples in Windows-1252, so the guess here is a simple count of letters.
_GUESSES = (("cp1252", "WINDOWS-1252"), ("cp1250", "WINDOWS-1250"), ("cp850", "CP850"),
            ("latin-1", "ISO-8859-1"))


@dataclass(frozen=True)
class TextFileSource(CustomerSource):
    """A customer file of text (CSV, JSONL) and the encoding it is read in (None: UTF-8,
    or what a byte order mark says; `--encoding` or `customers_encoding` otherwise)."""

    path: Path
    encoding: str | None = None

    @classmethod
    def from_setting(cls, value: str | Path | Mapping[str, object], *, root: Path | None,
                     encoding: str | None) -> TextFileSource:
        path = Path(str(value))
        if root is not None and not path.is_absolute():
            path = root / path
        return cls(path, encoding or None)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def label(self) -> str:
        where = str(self.path.resolve())
        return f"{where} ({self.encoding})" if self.encoding else where

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def check(self) -> None:
        if not self.path.is_file():
            raise missing_file(self.path)

    def encoding_problem(self) -> str | None:
        """Why the file looks like another encoding than it is read in (a run whose rows
        were rejected as "not UTF-8 text" ends with it, exit 3), or None."""
        try:
            return file_format(self.path, self.encoding, csv_file=False).suspect
        except OSError:
            return None

    def count_lines(self) -> int:
        lines = 0
        with self.path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                lines += block.count(b"\n")
        return lines


@dataclass(frozen=True)
class FileFormat:
    """How to read one file: the codec for io.TextIOWrapper and the CSV separator."""

    codec: str                 # "utf-8-sig" for UTF-8 (a mark or not), else the encoding
    name: str                  # as people write it: UTF-8, windows-1252
    separator: str = ","
    suspect: str | None = None  # why the file looks like another encoding, and what to do

    @property
    def utf8(self) -> bool:
        return self.codec == "utf-8-sig"

    @property
    def ascii_compatible(self) -> bool:
        """Newlines, quotes and ASCII ids are the same bytes as in ASCII (not UTF-16)."""
        try:
            return 'a,"\n'.encode(self.codec) == b'a,"\n'
        except UnicodeError:
            return False

    def open(self, handle: io.BufferedReader) -> io.TextIOWrapper:
        """Text from a binary handle: bytes the encoding cannot read survive as markers
        (surrogateescape) that the row checks reject, naming the column."""
        return io.TextIOWrapper(handle, encoding=self.codec, errors="surrogateescape",
                                newline="")


def _bom(sample: bytes) -> tuple[str, str] | None:
    for mark, codec, name in _BOMS:
        if sample.startswith(mark):
            return codec, name
    return None


def file_format(path: Path, encoding: str | None = None, *, csv_file: bool = True) -> FileFormat:
    """How to read `path` (see the module docstring): `suspect` says when a file read as
    UTF-8 is plainly another encoding; UsageError when UTF-8 text would be read as
    another one."""
    with path.open("rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    whole = len(sample) < SAMPLE_BYTES
    marked = _bom(sample)
    suspect = None
    if marked is not None:
        codec, name = marked
    elif encoding is None or codecs.lookup(encoding).name == "utf-8":
        codec, name = "utf-8-sig", "UTF-8"
        suspect = _not_utf8(path, sample, whole)
    else:
        codec, name = encoding, encoding
        _check_not_utf8(path, sample, whole, encoding)
    if not csv_file:
        return FileFormat(codec, name, suspect=suspect)
    head = sample[:HEADER_BYTES]
    text = codecs.getincrementaldecoder(codec)("replace").decode(
        head, final=whole and len(head) == len(sample))
    return FileFormat(codec, name, separator_of(text), suspect)


def separator_of(text: str) -> str:
    """The separator of a CSV file, from its first lines (see the module docstring)."""
    lines = text.splitlines(keepends=True)[:SNIFF_LINES]
    header = {sep: [n.strip() for n in next(csv.reader(io.StringIO(text), delimiter=sep),
                                            [])]
              for sep in SEPARATORS}
    with_id = [sep for sep in SEPARATORS if "id" in header[sep]]
    if len(with_id) == 1:
        return with_id[0]
    candidates = with_id or list(SEPARATORS)
    try:
        sniffed = csv.Sniffer().sniff("".join(lines), delimiters="".join(candidates)
                                      ).delimiter
    except csv.Error:
        sniffed = None
    if sniffed in candidates and len(header[sniffed]) > 1:
        return sniffed
    return max(candidates, key=lambda sep: len(header[sep]))   # the first on a tie: ","


# -- is it the encoding it will be read in? ---------------------------------------------


def _lines(sample: bytes, whole: bool) -> Iterator[bytes]:
    """The sample's lines, one at a time (no list: the sample may be a MiB of them);
    without the last one when the sample may have cut it mid-character."""
    start = 0
    while start < len(sample):
        end = sample.find(b"\n", start)
        if end == -1:
            if whole:
                yield sample[start:]
            return
        yield sample[start:end]
        start = end + 1


def _not_utf8(path: Path, sample: bytes, whole: bool) -> str | None:
    """Why a file read as UTF-8 is in another encoding, or None: two or more lines of
    the sample are not UTF-8 and none has a UTF-8 accent (one broken row of a UTF-8
    file, or random bytes in one, are that row's problem, not the file's)."""
    if sample.isascii():
        return None
    first_bad: tuple[int, bytes, int] | None = None
    bad_lines = 0
    for number, line in enumerate(_lines(sample, whole), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad_lines += 1
            if first_bad is None:
                first_bad = (number, line, exc.start)
            continue
        if not line.isascii():
            return None  # UTF-8 accents: a UTF-8 file
    if first_bad is None or bad_lines < 2:
        return None
    number, line, at = first_bad
    guess, iconv = guess_encoding(sample)
    shown = line[max(0, at - 20):at + 20].decode("utf-8", "backslashreplace").strip()
    reads = line[max(0, at - 20):at + 20].decode(guess, "replace").strip()
    target = path.with_name(f"{path.stem}.utf8{path.suffix}")
    return (f"{path}: the customer file is not UTF-8 text: line {number} has byte "
            f"0x{line[at]:02x} (\u201c{shown}\u201d), {bad_lines:,} lines of the first "
            f"{len(sample):,} bytes are not UTF-8 and none has UTF-8 accents. It looks like "
            f"{iconv}, which reads that as \u201c{reads}\u201d. Read it as such with "
            f"--encoding {iconv.lower()} (or `customers_encoding: {iconv.lower()}` in the "
            f"campaign), or convert it once: iconv -f {iconv} -t UTF-8 "
            f"{shlex.quote(str(path))} > {shlex.quote(str(target))}")


def _check_not_utf8(path: Path, sample: bytes, whole: bool, encoding: str) -> None:
    """Refuse UTF-8 text read as a one-byte encoding: every accent would be mojibake."""
    if sample.isascii():
        return
    utf8_line = None
    for number, line in enumerate(_lines(sample, whole), start=1):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return  # not UTF-8: the encoding given may well be right
        utf8_line = utf8_line or (number, line)
    if utf8_line is None or codecs.lookup(encoding).name.startswith("utf"):
        return
    number, line = utf8_line
    wrong = line.decode(encoding, "replace").strip()[:60]
    raise UsageError(
        f"the customer file is UTF-8 text, but it would be read as {encoding}: line "
        f"{number} would read \u201c{wrong}\u201d. Leave out --encoding (and "
        f"customers_encoding) to read it as UTF-8", path, number)


def guess_encoding(sample: bytes) -> tuple[str, str]:
    """(Python codec, iconv name) of what a file that is not UTF-8 most likely is."""
    if sample.count(b"\x00") * 4 > len(sample):  # every other byte: UTF-16 without a mark
        odd = sample[1::2].count(b"\x00") > sample[0::2].count(b"\x00")
        return ("utf-16-le", "UTF-16LE") if odd else ("utf-16-be", "UTF-16BE")
    best, best_score = _GUESSES[-1], -1.0
    for codec, name in _GUESSES:
        try:
            text = sample.decode(codec)
        except UnicodeDecodeError:
            continue
        others = [c for c in text if not c.isascii()]
        score = sum(c.isalpha() for c in others) / len(others) if others else 0.0
        if score > best_score:
            best, best_score = (codec, name), score
    return best
