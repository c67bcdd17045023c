"""Customer ids are bounded when the file is read (issue 17, finding 15c).

Runs accepted and signed ids of any length, but the PostgreSQL suppression store keeps
`customer_id VARCHAR(1024)`, so the unsubscribe of such a customer was never recorded,
and past ~650 characters List-Unsubscribe became RFC 2047 words mail programs ignore.
An id is now printable text of at most 255 bytes of UTF-8, else the row is rejected
with the reason; every id a run accepts fits the store and a plain header.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
from pathlib import Path

from conftest import AS_OF, CONTENT_DIRS, REPO, read_manifest, run_cli, write_customers_file

from edition.render.unsubscribe import token_of, verify
from edition.store.suppressions import SuppressionStore

ACCEPTED = ["A" * 255, "é" * 127, "名" * 85, "C 1", "Zoë-東京"]
REJECTED = {
    "B" * 256: "id too long: 256 characters (at most 255 bytes",
    "é" * 128: "id too long: 128 characters, 256 bytes",
    "D" * 2000: "id too long: 2,000 characters",
    "C\u200b1": "invisible character (U+200B)",   # zero width space
    "C\u202e1": "invisible character (U+202E)",   # right-to-left override
    "C\u00a01": "invisible character (U+00A0)",   # no-break space
    "C\ue0001": "invisible character (U+E000)",   # private use
}


def test_ids_are_bounded_and_every_accepted_one_fits_the_store_and_the_header(
        tmp_path: Path, postgres_server) -> None:
    root = tmp_path / "site"
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)
    ids = [*ACCEPTED, *REJECTED]
    customers = write_customers_file(root / "data" / "ids.csv", [
        {"id": cid, "email": f"p{n}@example.com", "first_name": "Pat"}
        for n, cid in enumerate(ids)])
    out = tmp_path / "run"
    code, _, stderr = run_cli("run", "campaigns/weekly-newsletter.yaml", "--customers",
                              customers, "--out", out, "--as-of", AS_OF, cwd=root)
    assert code == 0, stderr
    rows = {n: row for n, row in enumerate(read_manifest(out))}
    for n, cid in enumerate(ids):
        row = rows[n]
        if cid in REJECTED:
            assert row["status"] == "rejected", (cid[:20], row)
            assert REJECTED[cid] in row["reason"], row["reason"]
        else:
            assert row["status"] == "rendered" and row["customer_id"] == cid, row
    store = SuppressionStore(postgres_server.create_database())
    secret = os.environ["EDITION_UNSUBSCRIBE_SECRET"]
    for n, cid in enumerate(ACCEPTED):
        message = email.message_from_bytes((out / rows[n]["files"]["eml"]).read_bytes(),
                                           policy=email.policy.default)
        raw = message.get_all("List-Unsubscribe")
        assert raw and "=?" not in str(raw[0]), raw       # a plain header, not RFC 2047
        link = str(raw[0]).strip().strip("<>")
        assert verify(token_of(link), secret).customer_id == cid
        assert store.record("weekly-newsletter", cid, "hash", "test")
        assert [e.customer_id for e in store.lookup("weekly-newsletter", cid)] == [cid]
    store.close()


def test_json_ids_that_are_not_a_finite_number_or_text_are_rejected(tmp_path: Path) -> None:
    """JSON's 1e400 reads as inf (and NaN as nan): such a row became customer "inf";
    now rejected with the reason, beside a boolean, a list, an object and an empty id."""
    root = tmp_path / "site"
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)
    lines = ['{"id": 1e400, "email": "a@example.com"}', '{"id": NaN, "email": "b@example.com"}',
             '{"id": true, "email": "c@example.com"}', '{"id": [1], "email": "d@example.com"}',
             '{"id": "", "email": "e@example.com"}', '{"id": 3.5, "email": "f@example.com"}',
             '{"id": 12345678901234567890123, "email": "g@example.com"}']
    customers = root / "data" / "odd.jsonl"
    customers.parent.mkdir(parents=True, exist_ok=True)
    customers.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    code, _, stderr = run_cli("run", "campaigns/weekly-newsletter.yaml", "--customers",
                              customers, "--out", out, "--as-of", AS_OF, cwd=root)
    assert code == 0 and "Traceback" not in stderr, stderr
    rows = list(read_manifest(out))
    assert [r["status"] for r in rows] == ["rejected"] * 5 + ["rendered"] * 2, rows
    assert "finite number, not inf" in rows[0]["reason"]
    assert "finite number, not nan" in rows[1]["reason"]
    assert [r["customer_id"] for r in rows[5:]] == ["3.5", "12345678901234567890123"]
