"""The local target: atomic writes into a folder that no customer id can escape."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

# tests/ is not a package: pytest puts it on sys.path
from fixtures_delivery import make_delivery
from hypothesis import given, settings
from hypothesis import strategies as st

from publishers import DeliveryError, Outcome, Publisher, open_publisher, safe_name
from publishers.local import LocalPublisher

HOSTILE_IDS = [
    "../../x", "a/b", "a\\b", "/etc/passwd", "con", "CON", "con.txt", "nul", "lpt1", "x" * 300,
    "ünïcødé/ñame", "名前", "", ".", "..", "...", ".hidden", "a\x00b", "A", "a", "c1", "C1",
    "c1-0123456789", "trailing.", " spaced ", "tab\there", "semi;colon",
]


def files_for(cid: str) -> dict[str, tuple[str, bytes, str]]:
    return {
        "html": (f"html/{cid}.html", f"<p>{cid}</p>".encode(), "text/html; charset=utf-8"),
        "text": (f"text/{cid}.txt", cid.encode("utf-8", "surrogatepass"), "text/plain"),
    }


def test_writes_the_message_atomically_into_the_outbox(tmp_path: Path) -> None:
    delivery = make_delivery("C1")
    pub = open_publisher("local", out_dir=tmp_path)
    assert isinstance(pub, Publisher) and pub.target == "local"
    with pub:
        outcome = pub.publish(delivery)
        again = pub.publish(delivery)  # a rerun overwrites the same file
    assert outcome == again == Outcome("sent", provider_id="outbox/C1.eml")
    assert (tmp_path / "outbox" / "C1.eml").read_bytes() == delivery.eml
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == ["C1.eml"]  # no temp files


def test_without_a_message_the_files_are_written(tmp_path: Path) -> None:
    delivery = make_delivery("C1", eml=False, files=files_for("C1"))
    with open_publisher("local", out_dir=tmp_path, options={"fsync": True}) as pub:
        outcome = pub.publish(delivery)
    # named like the run folder's files: the same customer is the same name everywhere
    assert outcome.provider_id == "outbox/html/C1.html outbox/text/C1.txt"
    assert (tmp_path / "outbox/html/C1.html").read_bytes() == b"<p>C1</p>"
    assert (tmp_path / "outbox/text/C1.txt").read_bytes() == b"C1"


def test_nothing_to_deliver_fails(tmp_path: Path) -> None:
    with open_publisher("local", out_dir=tmp_path) as pub:
        outcome = pub.publish(make_delivery("c1", eml=False))
    assert outcome.status == "failed" and "nothing to deliver" in (outcome.reason or "")


def test_explicit_folder(tmp_path: Path) -> None:
    where = tmp_path / "elsewhere"
    with open_publisher(f"local:{where}", out_dir=tmp_path / "run") as pub:
        outcome = pub.publish(make_delivery("C1"))
    assert outcome.provider_id == "C1.eml"
    assert (where / "C1.eml").is_file()


def test_hostile_customer_ids_stay_inside_and_never_collide(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    with open_publisher("local", out_dir=tmp_path) as pub:
        for cid in HOSTILE_IDS:
            assert pub.publish(make_delivery(cid, "x@example.com")).status == "sent"
            pub.publish(make_delivery(cid, eml=False, files=files_for(cid)))
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(outbox.resolve()) for p in written)
    assert len([p for p in written if p.suffix == ".eml"]) == len(set(HOSTILE_IDS))
    assert len(written) == 3 * len(set(HOSTILE_IDS))
    assert not any(p.name.startswith(".") for p in written)


def test_safe_name_examples() -> None:
    assert safe_name("C1") == "C1"
    assert safe_name("C1.V2_X-Y") == "C1.V2_X-Y"
    assert re.fullmatch(r"x-[0-9a-f]{10}", safe_name("../../x"))
    assert re.fullmatch(r"con-[0-9a-f]{10}", safe_name("CON"))
    assert safe_name("a") != safe_name("A") == "A"  # distinct on case-insensitive disks too
    assert len(safe_name("x" * 1000)) <= 75
    assert safe_name("C1-0123456789") != "C1-0123456789"  # cannot impersonate a hashed name
    assert safe_name("X-ABCDEF0123") != "X-ABCDEF0123"    # not even in another case
    assert safe_name("C1.") != "C1."                        # Windows drops a trailing dot


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=80), min_size=2, max_size=20, unique=True))
def test_safe_name_is_portable_and_injective(ids: list[str]) -> None:
    names = [safe_name(i) for i in ids]
    assert len({n.lower() for n in names}) == len(ids)  # also on case-insensitive disks
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) and len(name) <= 75
        assert name.split(".")[0].lower() not in {"con", "prn", "aux", "nul"}
        assert not name.endswith(".")


def test_unwritable_folder_is_a_delivery_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    pub = open_publisher(f"local:{blocker}/sub", out_dir=tmp_path)
    with pytest.raises(DeliveryError, match="cannot create"):
        pub.__enter__()


def test_write_failure_leaves_no_partial_file(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with open_publisher("local", out_dir=tmp_path) as pub:
        monkeypatch.setattr("publishers.local.os.replace", disk_full)
        with pytest.raises(DeliveryError, match=r"cannot write .*No space left"):
            pub.publish(make_delivery("c1"))
    assert list((tmp_path / "outbox").iterdir()) == []


def test_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(DeliveryError, match="unknown delivery option 'fsynk'"):
        LocalPublisher("local", out_dir=tmp_path, options={"fsynk": True})
    engine_keys = {"to": "local", "ledger": "x.sqlite"}
    assert LocalPublisher("local", out_dir=tmp_path, options=engine_keys).fsync is False


def test_unknown_targets_are_refused_without_echoing_secrets(tmp_path: Path) -> None:
    with pytest.raises(DeliveryError, match="unknown delivery target") as info:
        open_publisher("ftp://bob:hunter22@files.example", out_dir=tmp_path)
    assert "hunter22" not in str(info.value)
