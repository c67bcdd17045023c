"""Writes the messy customer files of this folder (run it to regenerate them; the bytes
are committed, see README.md). Each is how a real tool writes a customer list."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ["id", "email", "first_name", "city", "interests", "lifetime_value"]
PEOPLE = [
    ["C1", "jose@example.es", "José", "A Coruña", "garden;travel", "6200.50"],
    ["C2", "zoe@example.fr", "Zoë", "Besançon", "books", "120"],
    ["C3", "francoise@example.fr", "Françoise", "Orléans", "", "5400"],
    ["C4", "orjan@example.no", "Ørjan", "Tromsø", "travel", "80.25"],
    ["C5", "mueller@example.de", "Jürgen", "München", "garden", "9999"],
    ["C6", "ana@example.pt", "Ana", "São Paulo", "", "15"],
]


def text(rows: list[list[str]], separator: str, newline: str) -> str:
    """The rows as a CSV file; `;`-separated files write decimal commas (6200,50), as
    spreadsheets do where `;` is the list separator."""
    if separator == ";":
        rows = [[*row[:5], row[5].replace(".", ",")] for row in rows]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=separator, lineterminator=newline)
    writer.writerows([COLUMNS, *rows])
    return out.getvalue()


def main() -> None:
    files: dict[str, bytes] = {
        # Excel "CSV UTF-8" where the decimal separator is a comma: BOM, ';', CRLF
        "excel-semicolon-bom.csv": b"\xef\xbb\xbf" + text(PEOPLE, ";", "\r\n").encode(),
        # the same without the mark, LF (LibreOffice, scripts)
        "semicolon.csv": text(PEOPLE, ";", "\n").encode(),
        # Excel "CSV" in Western Europe: Windows-1252, ';', CRLF
        "excel-windows-1252.csv": text(PEOPLE, ";", "\r\n").encode("cp1252"),
        # Excel "Unicode text": UTF-16 LE with a mark, tabs, CRLF
        "excel-unicode-text.txt": text(PEOPLE, "\t", "\r\n").encode("utf-16"),
        # a tab-separated export in UTF-8
        "tabs.tsv": text(PEOPLE, "\t", "\n").encode(),
        # a CRM's pipe-separated export
        "pipes.csv": text(PEOPLE, "|", "\n").encode(),
        # commas, CRLF
        "crlf.csv": text(PEOPLE, ",", "\r\n").encode(),
        # quoted cells holding newlines, quotes, the separator; one row without an
        # address among 12 (rejected, under the test campaign's max_rejected: 10%)
        "quoted-newlines.csv": text(
            [*PEOPLE,
             ["C7", "li@example.cn", 'Li "Lucky"', "Line one\nLine two", "a;b", "1"],
             ["C8", "o@example.ie", "O'Brien, Ann", "Cork,\r\nIreland", "", "2"],
             ["C9", "", "Nomail", "Nowhere", "", "3"],
             ["C10", "x@example.com", "Ten", "Ten\n\nTen", "", "4"],
             ["C11", "y@example.com", "Eleven", "", "", ""],
             ["C12", "z@example.com", "Twelve", "", "", ""]], ",", "\r\n").encode(),
        # a UTF-8 file with one row pasted from a Windows-1252 file: that row is rejected
        # ("not UTF-8 text"), 1 of 6, over the test campaign's max_rejected: 10%
        "utf8-one-broken-row.csv": text(PEOPLE[:5], ",", "\n").encode()
        + "C6,ana@example.pt,Ana,São Paulo,,15\n".encode("cp1252"),
        # JSONL with a mark and CRLF line ends
        "bom-crlf.jsonl": b"\xef\xbb\xbf" + "".join(
            json.dumps(dict(zip(COLUMNS, p, strict=True)) | {"interests": [
                i for i in p[4].split(";") if i]}, ensure_ascii=False) + "\r\n"
            for p in PEOPLE).encode(),
    }
    for name, data in files.items():
        (HERE / name).write_bytes(data)


if __name__ == "__main__":
    main()
