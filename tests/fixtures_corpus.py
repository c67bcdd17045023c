"""The outside template corpus (tests/corpus/templates) as campaigns, and customers for it.

Each folder there is a popular open-source email layout (its LICENCE beside it) adapted
into a campaign template: customer fields printed, tested (`if`, `is defined`, `default`),
put in attributes and links, a customer's orders looped over. `corpus_site(root)` copies
the sample content (modules, segments) and adds each layout as a campaign of its own;
`corpus_customers(n)` makes customers the way a shop's export looks: the sample
population plus a city (often empty), points (missing, zero or many), orders (a list,
sometimes empty), a VIP flag, and now and then a hostile value.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edition.audience.sampledata import iter_customers

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "corpus" / "templates"
NAMES = sorted(p.name for p in CORPUS.iterdir() if (p / "campaign.yaml").is_file())
CONTENT_DIRS = ("campaigns", "templates", "articles", "offers", "greetings")

HOSTILE = ["<script>alert('x')</script>", "O'Brien & \"Sons\"", "\" onmouseover=\"alert(1)",
           "{{ customer.id }}", "שלום", "🎉 Zoë", "a&amp;b", "</td></tr></table>"]
CITIES = ["Leeds", "Zürich", "São Paulo", "new york", "", "", ""]


def corpus_site(root: Path) -> Path:
    """The sample content plus one campaign per corpus layout, under `root`."""
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)
    for name in NAMES:
        shutil.copytree(CORPUS / name, root / "templates" / name)
        shutil.copy(CORPUS / name / "campaign.yaml", root / "campaigns" / f"{name}.yaml")
    # the sample modules say which campaigns they are for: the corpus campaigns too
    for module in [*root.glob("articles/*.md"), *root.glob("offers/*.md"),
                   *root.glob("greetings/*.md")]:
        text = module.read_text(encoding="utf-8")
        module.write_text(re.sub(r"^campaigns: \[weekly-newsletter",
                                 "campaigns: [" + ", ".join(NAMES) + ", weekly-newsletter",
                                 text, count=1, flags=re.M), encoding="utf-8")
    return root


def corpus_customers(count: int, seed: int = 11) -> Iterator[dict[str, Any]]:
    """Sample customers with a shop's fields; missing means missing (JSON without it)."""
    rng = random.Random(seed)
    for fields in iter_customers(count, seed=seed):
        fields = dict(fields)
        city = rng.choice(CITIES)
        if city or rng.random() < 0.5:
            fields["city"] = city            # an empty string, or no field at all
        roll = rng.random()
        if roll < 0.6:
            fields["points"] = rng.choice([0, 0, 5, 120, 2500, 7.5])
        orders = [{"number": rng.randint(1, 10**6), "description": rng.choice(
                      ["Walking boots", "Tea, 250 g", "Gift card & wrap"]),
                   "amount": round(rng.uniform(1, 300), 2)}
                  for _ in range(rng.choice([0, 0, 1, 2, 3]))]
        if orders or rng.random() < 0.5:
            fields["orders"] = orders
            fields["total"] = round(sum(o["amount"] for o in orders), 2)
        if rng.random() < 0.3:
            fields["vip"] = rng.random() < 0.5
        if rng.random() < 0.2:
            fields["card_last_four"] = f"{rng.randint(0, 9999):04d}"
        if rng.random() < 0.05:
            fields[rng.choice(["first_name", "city"])] = rng.choice(HOSTILE)
        yield fields


def write_corpus_customers(path: Path, count: int, seed: int = 11) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for fields in corpus_customers(count, seed):
            fh.write(json.dumps(fields, ensure_ascii=False) + "\n")
    return path
