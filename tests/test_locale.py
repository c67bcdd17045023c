"""Locale-aware editions of the sample campaigns: a Spanish customer's .eml has the Spanish
subject (read back through the stdlib email package), Spanish dates, and euro amounts
written by Babel the Spanish way; an English customer's keeps English and dollars.

The real CLI on the sample content and the 300 generated customers (seed 7).
"""

from __future__ import annotations

import csv
import email
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from conftest import AS_OF, read_manifest, run_cli

MONTHS_ES = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
             "septiembre", "octubre", "noviembre", "diciembre")
MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December")


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def runs(sample_root: Path, sample_customers: Path,
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("locale")
    done = {}
    for name in ("weekly-newsletter", "invoice"):
        out = folder / name
        rc, stdout, stderr = run_cli("run", f"campaigns/{name}.yaml", "--customers",
                                     sample_customers, "--out", out, "--as-of", AS_OF,
                                     "--formats", "eml", cwd=sample_root)
        assert rc == 0, stdout + stderr
        done[name] = out
    return done


def customer(sample_customers: Path, locale: str) -> dict[str, str]:
    """The first customer of that locale with a first name and a bill under 1,000."""
    return next(r for r in rows(sample_customers)
                if r["locale"] == locale and r["first_name"] and Decimal(r["total"]) < 1000)


def message(out: Path, customer_id: str) -> tuple[bytes, EmailMessage]:
    entry = next(m for m in read_manifest(out) if m["customer_id"] == customer_id)
    assert entry["status"] == "rendered", entry
    raw = (out / entry["files"]["eml"]).read_bytes()
    return raw, email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def bodies(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def long_date(iso: str, locale: str) -> str:
    year, month, day = (int(p) for p in iso.split("-"))
    if locale == "es":
        return f"{day} de {MONTHS_ES[month - 1]} de {year}"
    return f"{MONTHS_EN[month - 1]} {day}, {year}"


def test_a_spanish_customer_gets_the_newsletter_in_spanish(runs: dict[str, Path],
                                                           sample_customers: Path) -> None:
    person = customer(sample_customers, "es")
    raw, msg = message(runs["weekly-newsletter"], person["id"])
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n", 1)[0].lower()  # encoded on the wire
    assert msg["Subject"] == f"{person['first_name']}, tu edición de la semana"
    text, html = bodies(msg)
    assert f"Semana del {long_date(AS_OF, 'es')}" in text
    assert f"Semana del {long_date(AS_OF, 'es')}" in html
    assert '<html lang="es"' in html


def test_an_english_customer_keeps_the_english_newsletter(runs: dict[str, Path],
                                                          sample_customers: Path) -> None:
    person = customer(sample_customers, "en")
    _, msg = message(runs["weekly-newsletter"], person["id"])
    assert msg["Subject"] == f"{person['first_name']}, your weekly edition"
    text, _ = bodies(msg)
    assert f"Week of {long_date(AS_OF, 'en')}" in text


def expected_amount(total: str, locale: str) -> str:
    amount = Decimal(total).quantize(Decimal("0.01"))
    if locale == "es":   # Spanish: decimal comma, a no-break space, the euro sign after
        return f"{amount}".replace(".", ",") + "\u00a0€"
    return f"${amount}"


@pytest.mark.parametrize("locale", ["es", "en"])
def test_the_invoice_in_each_locale(runs: dict[str, Path], sample_customers: Path,
                                    locale: str) -> None:
    person = customer(sample_customers, locale)
    _, msg = message(runs["invoice"], person["id"])
    number = person["invoice_number"]
    assert msg["Subject"] == ({"es": f"Tu factura de Acme {number} ya está lista",
                               "en": f"Your Acme bill {number} is ready"}[locale])
    text, html = bodies(msg)
    amount = expected_amount(person["total"], locale)
    due = long_date(person["due_date"], locale)
    for body in (text, unescape(html)):   # the HTML may write the no-break space &nbsp;
        assert amount in body, (amount, body[:1500])
        assert due in body
    other: dict[str, Any] = {"es": "$", "en": "€"}
    assert other[locale] not in text and other[locale] not in html
    if locale == "es":
        assert "Importe a pagar:" in text
        assert f"{Decimal(person['total']):.2f}" not in text   # no decimal point for es
