"""Realistic, deterministic sample customers for demos, tests and benchmarks.

``write_customers(path, count, seed)`` streams ``count`` customer rows to a CSV file
(or JSON Lines when the path ends in ``.jsonl``). The same seed always gives the same
bytes: every random draw comes from ``random.Random(seed)`` and every date is computed
from the fixed reference date :data:`REFERENCE_DATE` (2026-11-01), never from "today".

The population is shaped so that the sample campaigns have something to show:

* about a quarter of the customers are Spanish-speaking (``locale`` ``es``, Spanish
  names and cities), the rest English (``en``);
* ``age`` runs from 18 to 92 with about 18 % aged 65 or over;
* ``life_stage`` (single, couple, expecting, family, retired, newcomer) follows age;
* ``tenure_months`` runs from 0 to 240, with a share of newcomers under 6 months, and
  ``member_since`` is the date that many whole months before the reference date;
* ``lifetime_value`` is skewed: most customers below 2,000, about 8 % at 5,000 or more;
* ``interests`` holds 0-3 of garden, travel, cooking, baby, finance, health, tech,
  sport, books (``;``-separated in CSV, a JSON list in JSONL), leaning on life stage;
* invoice fields ``invoice_number``, ``total`` and ``due_date`` (in December 2026).

With ``messy=True`` about one row in 200 carries a realistic flaw (missing email,
malformed email, a repeated id, ``age`` = ``"n/a"``, empty first name) so that reports
have rejects and failures to show. The flaws come from a second random stream, so
every other row is byte-for-byte the same as with ``messy=False``.

Rows are written one at a time: memory stays constant whatever ``count`` is.
"""

from __future__ import annotations

import csv
import json
import math
import random
import unicodedata
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from itertools import accumulate
from pathlib import Path
from typing import cast

__all__ = ["COLUMNS", "INTERESTS", "REFERENCE_DATE", "iter_customers", "write_customers"]

#: Fixed "now" of the sample data: tenure and member_since are relative to it.
REFERENCE_DATE = date(2026, 11, 1)

#: Column order of the CSV output (and key order of the JSONL output).
COLUMNS: tuple[str, ...] = (
    "id",
    "email",
    "first_name",
    "last_name",
    "locale",
    "interests",
    "age",
    "life_stage",
    "tenure_months",
    "lifetime_value",
    "city",
    "member_since",
    "invoice_number",
    "total",
    "due_date",
)

INTERESTS: tuple[str, ...] = (
    "garden",
    "travel",
    "cooking",
    "baby",
    "finance",
    "health",
    "tech",
    "sport",
    "books",
)

SPANISH_SHARE = 0.25
MESSY_RATE = 1 / 200
EMAIL_DOMAINS = ("example.com", "example.com", "example.com", "example.org")

# fmt: off
EN_FIRST = (
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Mia", "Noah", "Grace",
    "Charlie", "Lily", "Thomas", "Emily", "James", "Sophie", "William", "Ella", "Henry",
    "Chloe", "Samuel", "Ruby", "Daniel", "Evie", "Joseph", "Poppy", "David", "Freya",
    "Michael", "Alice", "Edward", "Hannah", "Arthur", "Rosie", "Peter", "Margaret",
    "Robert", "Susan", "John", "Patricia", "Richard", "Linda", "Paul", "Barbara", "Mark",
    "Elizabeth", "Andrew", "Jennifer", "Christopher", "Sarah", "Matthew", "Laura",
    "Ethan", "Olivia", "Liam", "Emma", "Aiden", "Zoe", "Priya", "Ravi", "Aisha", "Omar",
    "Mei", "Kwame", "Niamh", "Declan", "Fiona", "Rhys", "Siobhan", "Dorothy", "Harold",
)
EN_LAST = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
    "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green",
    "Hall", "Wood", "Jackson", "Clarke", "Patel", "Khan", "Lewis", "James", "Phillips",
    "Mason", "Mitchell", "Rose", "Davis", "Rodgers", "Stevens", "Bennett", "Hughes",
    "Cooper", "Ward", "Morris", "King", "Turner", "Baker", "Harris", "Martin", "Cook",
    "Murphy", "O'Brien", "Kelly", "Campbell", "Anderson", "Scott", "Young", "Allen",
    "Nguyen", "Chen", "Okafor", "Mensah", "Fletcher", "Barnes", "Gray", "Fox", "Lloyd",
)
ES_FIRST = (
    "María", "José", "Lucía", "Antonio", "Carmen", "Manuel", "Sofía", "Francisco",
    "Martina", "David", "Paula", "Javier", "Laura", "Daniel", "Ana", "Carlos", "Elena",
    "Miguel", "Isabel", "Alejandro", "Julia", "Pablo", "Valeria", "Sergio", "Marta",
    "Jorge", "Cristina", "Luis", "Pilar", "Álvaro", "Rocío", "Diego", "Teresa", "Adrián",
    "Alba", "Raúl", "Inés", "Iván", "Nerea", "Andrés", "Begoña", "Íñigo", "Mercedes",
    "Ramón", "Dolores", "Hugo", "Noelia", "Rubén", "Ainhoa", "Guadalupe", "Joaquín",
)
ES_LAST = (
    "García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez",
    "Pérez", "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno",
    "Muñoz", "Álvarez", "Romero", "Alonso", "Gutiérrez", "Navarro", "Torres",
    "Domínguez", "Vázquez", "Ramos", "Gil", "Ramírez", "Serrano", "Blanco", "Molina",
    "Morales", "Suárez", "Ortega", "Delgado", "Castro", "Ortiz", "Rubio", "Marín",
    "Sanz", "Núñez", "Iglesias", "Medina", "Garrido", "Cortés", "Castillo", "Santos",
    "Lozano", "Guerrero", "Cano", "Prieto", "Méndez", "Peña", "Ibáñez", "Herrera",
)
EN_CITIES = (
    "London", "Manchester", "Birmingham", "Leeds", "Bristol", "Glasgow", "Edinburgh",
    "Cardiff", "Liverpool", "Sheffield", "Nottingham", "Brighton", "Oxford", "Cambridge",
    "York", "Norwich", "Belfast", "Dublin", "Leicester", "Southampton", "Exeter", "Bath",
    "Boston", "Chicago", "Seattle", "Portland", "Denver", "Austin", "Toronto",
)
ES_CITIES = (
    "Madrid", "Barcelona", "Valencia", "Sevilla", "Zaragoza", "Málaga", "Bilbao",
    "Murcia", "Palma", "Alicante", "Córdoba", "Valladolid", "Vigo", "Gijón", "Granada",
    "A Coruña", "Vitoria-Gasteiz", "Santander", "Pamplona", "Salamanca", "Cádiz",
    "Miami", "Los Angeles", "San Antonio", "London",
)
# fmt: on

# Age bands (inclusive) and their weights: 11 % + 7 % = 18 % aged 65 and over.
_AGE_BANDS = ((18, 24), (25, 34), (35, 44), (45, 54), (55, 64), (65, 74), (75, 92))
_AGE_WEIGHTS = (10, 20, 20, 17, 15, 11, 7)

# Life stage given the age band index: (stages, weights).
_STAGES: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...] = (
    (("single", "couple", "newcomer", "expecting"), (68, 14, 12, 6)),
    (("single", "couple", "expecting", "family", "newcomer"), (28, 24, 16, 22, 10)),
    (("single", "couple", "expecting", "family", "newcomer"), (15, 16, 8, 52, 9)),
    (("single", "couple", "family", "newcomer"), (16, 30, 49, 5)),
    (("single", "couple", "family", "retired"), (15, 48, 15, 22)),
    (("single", "couple", "retired"), (10, 28, 62)),
    (("single", "couple", "retired"), (14, 16, 70)),
)

# Interest weights per life stage, in the order of INTERESTS.
_INTEREST_WEIGHTS: dict[str, tuple[int, ...]] = {
    #            gardn trav cook baby fin hlth tech sprt book
    "single": (4, 12, 10, 1, 7, 7, 12, 12, 8),
    "couple": (8, 12, 11, 2, 8, 7, 7, 7, 8),
    "expecting": (3, 5, 8, 30, 10, 10, 5, 4, 6),
    "family": (8, 7, 12, 8, 10, 7, 7, 10, 9),
    "retired": (16, 11, 10, 1, 10, 13, 4, 4, 13),
    "newcomer": (4, 12, 10, 2, 9, 6, 10, 8, 7),
}
_INTEREST_COUNT_WEIGHTS = (15, 35, 30, 20)  # 0, 1, 2 or 3 interests

_FLAWS = ("missing_email", "malformed_email", "repeated_id", "age_na", "empty_first_name")


def _ascii(name: str) -> str:
    """Lower-case ASCII form of a name for e-mail addresses (José -> jose)."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


_ASCII = {n: _ascii(n) for n in (*EN_FIRST, *EN_LAST, *ES_FIRST, *ES_LAST)}


def _months_before(ref: date, months: int, day: int) -> date:
    """The date ``day`` of the month lying ``months + 1`` months before ``ref``."""
    index = ref.year * 12 + (ref.month - 1) - months - 1
    return date(index // 12, index % 12 + 1, day)


def _cumulative(weights: Sequence[int]) -> tuple[float, ...]:
    """Cumulative weights scaled to end at 1.0, for :func:`bisect.bisect`."""
    total = sum(weights)
    return tuple(c / total for c in accumulate(weights))


_AGE_CUM = _cumulative(_AGE_WEIGHTS)
_STAGE_CUM = tuple((stages, _cumulative(w)) for stages, w in _STAGES)
_INTEREST_CUM = {stage: _cumulative(w) for stage, w in _INTEREST_WEIGHTS.items()}
_INTEREST_COUNT_CUM = _cumulative(_INTEREST_COUNT_WEIGHTS)
_DUE_DATES = tuple(date(2026, 12, d).isoformat() for d in range(1, 32))


# Column positions used by the generator, the flaws and the CSV writer.
_ID, _EMAIL, _FIRST, _INTERESTS, _AGE = (
    COLUMNS.index(c) for c in ("id", "email", "first_name", "interests", "age")
)
_MONEY_COLS = (COLUMNS.index("lifetime_value"), COLUMNS.index("total"))


def _rows(count: int, seed: int, messy: bool) -> Iterator[list[object]]:
    """Yield one list per customer, values in :data:`COLUMNS` order.

    A missing value (only with ``messy``) is ``None``. Everything is built on
    ``rng.random()`` draws and closed-form transforms, which keeps it fast. The helpers
    below draw in a fixed order: the same seed gives the same customers.
    """
    rng = random.Random(seed)
    rand = rng.random
    flaw_rng = random.Random(f"messy-{seed}")
    recent_ids: list[str] = []  # a small window of ids to repeat: constant memory
    member_since_cache: dict[tuple[int, int], str] = {}

    for n in range(1, count + 1):
        locale, first, last, email_last, city = _name(rand)
        age, stage, tenure, member_since = _life(rand, member_since_cache)
        interests = _interests(rand, stage)
        value, total = _amounts(rand)
        customer_id = f"C{n:06d}"
        domain = EMAIL_DOMAINS[int(rand() * len(EMAIL_DOMAINS))]
        row: list[object] = [
            customer_id,
            f"{_ASCII[first]}.{email_last}.{n}@{domain}",
            first,
            last,
            locale,
            interests,
            age,
            stage,
            tenure,
            value / 100,
            city,
            member_since,
            f"INV-2026-{n:06d}",
            total / 100,
            _DUE_DATES[int(rand() * 31)],
        ]
        if messy and flaw_rng.random() < MESSY_RATE:
            _spoil(row, flaw_rng, recent_ids)
        if len(recent_ids) < 64:
            recent_ids.append(customer_id)
        else:
            recent_ids[n % 64] = customer_id
        yield row


def _name(rand: Callable[[], float]) -> tuple[str, str, str, str, str]:
    """Locale, first name, last name, the last name as the address has it, city."""
    if rand() < SPANISH_SHARE:
        first = ES_FIRST[int(rand() * len(ES_FIRST))]
        last = ES_LAST[int(rand() * len(ES_LAST))]
        email_last = _ASCII[last]
        if rand() < 0.3:  # Spanish customers often carry two surnames
            second = ES_LAST[int(rand() * len(ES_LAST))]
            email_last += _ASCII[second]
            last = f"{last} {second}"
        return "es", first, last, email_last, ES_CITIES[int(rand() * len(ES_CITIES))]
    first = EN_FIRST[int(rand() * len(EN_FIRST))]
    last = EN_LAST[int(rand() * len(EN_LAST))]
    return "en", first, last, _ASCII[last], EN_CITIES[int(rand() * len(EN_CITIES))]


def _life(rand: Callable[[], float],
          member_since_cache: dict[tuple[int, int], str]) -> tuple[int, str, int, str]:
    """Age, life stage, tenure in months and the member-since date."""
    band = bisect(_AGE_CUM, rand())
    low, high = _AGE_BANDS[band]
    age = low + int(rand() * (high - low + 1))
    stages, stage_cum = _STAGE_CUM[band]
    stage = stages[bisect(stage_cum, rand())]

    max_tenure = min(240, (age - 18) * 12 + 11)
    if stage == "newcomer" or rand() < 0.08:
        tenure = int(rand() * (min(5, max_tenure) + 1))
    else:  # exponential, mean 45 months, on top of the first six
        tenure = min(max_tenure, 6 + int(-45.0 * math.log(1.0 - rand())))
    key = (tenure, 2 + int(rand() * 27))
    member_since = member_since_cache.get(key)
    if member_since is None:
        member_since = _months_before(REFERENCE_DATE, *key).isoformat()
        member_since_cache[key] = member_since
    return age, stage, tenure, member_since


def _interests(rand: Callable[[], float], stage: str) -> list[str]:
    """A few interests, likelier ones for the life stage, without repeats."""
    interests: list[str] = []
    cum = _INTEREST_CUM[stage]
    for _ in range(bisect(_INTEREST_COUNT_CUM, rand())):
        interest = INTERESTS[bisect(cum, rand())]
        while interest in interests:  # without replacement: draw again
            interest = INTERESTS[bisect(cum, rand())]
        interests.append(interest)
    return interests


def _amounts(rand: Callable[[], float]) -> tuple[int, int]:
    """Lifetime value and invoice total, in whole cents.

    Two independent standard normals (Box-Muller) for two log-normal amounts: lifetime
    value around 800 (~76 % below 2,000, ~8 % at 5,000 or more) and the invoice total
    around 60.
    """
    radius = math.sqrt(-2.0 * math.log(1.0 - rand()))
    angle = math.tau * rand()
    value = min(25_000_000, int(math.exp(6.685 + 1.3 * radius * math.cos(angle)) * 100 + 0.5))
    total = min(400_000, int(math.exp(4.1 + 0.7 * radius * math.sin(angle)) * 100 + 0.5))
    return value, total


def _spoil(row: list[object], rng: random.Random, recent_ids: Sequence[str]) -> None:
    """Give one row a realistic flaw, in place."""
    flaw = rng.choice(_FLAWS)
    if flaw == "repeated_id" and not recent_ids:
        flaw = "age_na"
    if flaw == "missing_email":
        row[_EMAIL] = None
    elif flaw == "malformed_email":
        email = str(row[_EMAIL])   # the row's one flaw: its address is still there
        row[_EMAIL] = rng.choice(
            (
                email.replace("@", ".at."),
                email.split("@")[0] + "@",
                email.replace("@", "@@"),
                email.replace("@example", "@ example"),
            )
        )
    elif flaw == "repeated_id":
        row[_ID] = rng.choice(recent_ids)
    elif flaw == "age_na":
        row[_AGE] = "n/a"
    else:
        row[_FIRST] = ""


def iter_customers(count: int, seed: int = 0, messy: bool = False) -> Iterator[dict[str, object]]:
    """Yield ``count`` customer records as dicts (typed values, ``interests`` a list).

    These are the records :func:`write_customers` writes. A flawed record
    (``messy=True``) may lack ``email``, or have ``first_name`` = ``""``,
    ``age`` = ``"n/a"``, a malformed e-mail or the id of an earlier record.
    """
    for row in _rows(count, seed, messy):
        if None in row:
            yield {col: value for col, value in zip(COLUMNS, row, strict=True) if value is not None}
        else:
            yield dict(zip(COLUMNS, row, strict=True))


def write_customers(path: str | Path, count: int, seed: int = 0, messy: bool = False) -> int:
    """Write ``count`` sample customers to ``path`` and return the number of rows written.

    The format follows the suffix: ``.jsonl`` writes JSON Lines (``interests`` a list,
    numbers as numbers, a missing value left out), anything else CSV with a header row
    (``interests`` ``;``-separated, money with two decimals, a missing value empty).
    Parent folders are created. The output depends only on ``count``, ``seed`` and
    ``messy``; rows are streamed, so memory use does not grow with ``count``.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    if target.suffix.lower() == ".jsonl":
        encode = json.JSONEncoder(ensure_ascii=False).encode
        with target.open("w", encoding="utf-8", newline="\n") as fh:
            for record in iter_customers(count, seed=seed, messy=messy):
                fh.write(encode(record) + "\n")
                written += 1
    else:
        with target.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(COLUMNS)
            for row in _rows(count, seed, messy):
                row[_INTERESTS] = ";".join(cast("list[str]", row[_INTERESTS]))
                for i in _MONEY_COLS:
                    row[i] = f"{row[i]:.2f}"
                writer.writerow(row)  # None (a missing value) is written as ""
                written += 1
    return written
