"""A small house for the cadence tests: two marketing campaigns and a transactional one,
sharing a content root (and so the house's edition.yaml and send history)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PAGE = ("<html><body><p>Hi {{ customer.first_name | default('there') }}</p>"
        "{% for a in articles %}{{ a.html }}{% endfor %}"
        "{% if customer.unsubscribe_url %}<a href=\"{{ customer.unsubscribe_url }}\">"
        "unsubscribe</a>{% endif %}</body></html>\n")
TEXT = ("Hi {{ customer.first_name | default('there') }}\n"
        "{% for a in articles %}{{ a.text }}\n{% endfor %}")


def campaign(name: str, kind: str = "marketing", **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "template": "page.html.j2",
            "text_template": "page.txt.j2", "subject": f"{name} for you",
            "sender": "Acme <news@acme.example>", "customers": "data/customers.csv",
            "slots": {"articles": {"kind": "article", "count": 1}},
            "formats": ["html", "text", "eml"], "delivery": {"to": "local"},
            "unsubscribe_url": "https://acme.example/unsubscribe",
            "footer": {"address": "1 Main St"}, **extra}


def house(content_tree: Any, customers: list[dict[str, Any]], *, edition_yaml: str = "",
          **campaigns: dict[str, Any]) -> Path:
    """news-a, news-b (marketing), bill (transactional), plus any campaign given."""
    all_campaigns = {"news-a.yaml": campaign("news-a"), "news-b.yaml": campaign("news-b"),
                     "bill.yaml": campaign("bill", kind="transactional")}
    all_campaigns |= {f"{k}.yaml": v for k, v in campaigns.items()}
    files = {"edition.yaml": edition_yaml} if edition_yaml else {}
    return content_tree(
        campaigns=all_campaigns,
        templates={"page.html.j2": PAGE, "page.txt.j2": TEXT},
        articles={"hello.md": {"title": "Hello", "body": "News of the week.\n"}},
        customers={"customers.csv": customers}, files=files)


def people(count: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"id": f"c{i:03d}", "email": f"c{i:03d}@example.com", "first_name": f"Ann{i}",
             **fields} for i in range(count)]
