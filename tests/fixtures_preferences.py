"""A small content root of our own with a preference center, for the preference tests:
a campaign with topics mapped to module interests, articles in en and es, a template
that prints the preference link, large type and the chosen language; customers in a
messy CSV (semicolons, a BOM, an empty cell, a long id); and `edition web` on a loopback
port (the real CLI)."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fixtures_delivery import free_port
from fixtures_sending import cli_env, edition_command
from fixtures_web import running_web

NAME = "garden-news"
CAMPAIGN = f"campaigns/{NAME}.yaml"
AS_OF = "2026-11-23"
LONG_ID = "9" * 40

TEMPLATE = """<!doctype html>
<html lang="{{ locale }}"><head><meta charset="utf-8"><title>News</title></head>
<body class="{{ 'large' if customer.large_type else 'normal' }}">
<span style="display:none">news</span>
{% for a in articles %}<h2 class="article" data-id="{{ a.id }}">{{ a.title }}</h2>{% endfor %}
<p>format: {{ customer.preferred_format | default('html') }}</p>
<a id="prefs" href="{{ customer.preferences_url | default('') }}">Preferences</a>
<a id="unsub" href="{{ customer.unsubscribe_url | default('') }}">Unsubscribe</a>
</body></html>
"""
TEXT = """{% for a in articles %}{{ a.title }}
{% endfor %}Preferences: {{ customer.preferences_url | default('') }}
"""
ARTICLES = {
    "garden-a": ("Roses in winter", "garden", "en", 0),
    "travel-a": ("Trains across Europe", "travel", "en", 0),
    "cooking-a": ("Soup for cold days", "cooking", "en", 0),
    "garden-es": ("Rosas en invierno", "garden", "es", 0),
    "travel-es": ("Trenes por Europa", "travel", "es", 0),
}


def make_site(root: Path, server: str) -> Path:
    for folder in ("campaigns", "templates", "articles"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "templates" / "news.html.j2").write_text(TEMPLATE, encoding="utf-8")
    (root / "templates" / "news.txt.j2").write_text(TEXT, encoding="utf-8")
    for ident, (title, interest, locale, priority) in ARTICLES.items():
        (root / "articles" / f"{ident}.md").write_text(
            f"---\ntitle: {title}\ninterests: [{interest}]\nlocales: [{locale}]\n"
            f"priority: {priority}\n---\n{title}.\n", encoding="utf-8")
    campaign = {
        "name": NAME, "template": "news.html.j2", "subject": "Garden news",
        "sender": "Garden News <news@garden.example>", "formats": ["html", "text", "eml"],
        "slots": {"articles": {"kind": "article", "count": 2}},
        "unsubscribe_url": f"{server}/unsubscribe",
        "preferences": {"url": f"{server}/preferences",
                        "topics": {"garden": {"en": "Gardening", "es": "Jardinería"},
                                   "travel": "Travel", "cooking": "Cooking"}},
    }
    (root / CAMPAIGN).write_text(json.dumps(campaign, indent=1), encoding="utf-8")
    return root


def write_customers(path: Path) -> Path:
    """Semicolons, a BOM, an empty locale cell, a 40-digit id, a hostile name."""
    rows = ["id;email;first_name;locale;interests",
            "c1;ann@example.com;Ann;en;travel",
            "c2;bo@example.com;Bo;;cooking",
            f"{LONG_ID};cy@example.com;<script>x</script>;en;cooking",
            "c4;di@example.com;Di;es;travel"]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode("utf-8") + b"\r\n")
    return path


def run_edition(*args: Any, cwd: Path, timeout: float = 300) -> tuple[int, str, str]:
    proc = subprocess.run([*edition_command(), *map(str, args)], cwd=cwd, env=cli_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def dry_run(root: Path, customers: Path, out: Path) -> dict[str, dict[str, Any]]:
    code, stdout, stderr = run_edition("run", CAMPAIGN, "--customers", customers, "--out",
                                       out, "--as-of", AS_OF, "--overwrite", cwd=root)
    assert code == 0, stdout + stderr
    rows = [json.loads(line) for line in
            (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    return {row["customer_id"]: row for row in rows}


@contextlib.contextmanager
def web_server(root: Path, port: int, verb: str = "web") -> Iterator[str]:
    """`edition web` (or its alias) on 127.0.0.1:port for the content root; stopped after."""
    url = f"http://127.0.0.1:{port}"
    log = root.parent / f"web-{port}.log"
    with running_web(root, port, cli_env(), log, verb=verb, command=edition_command()) as url:
        yield url


__all__ = ["AS_OF", "CAMPAIGN", "LONG_ID", "NAME", "dry_run", "free_port", "make_site",
           "run_edition", "web_server", "write_customers"]
