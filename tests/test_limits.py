"""Bounded templates: a template or module cannot take the machine.

`{{ 'x' * 10**9 }}` in a module ran to a MemoryError at 5.9 GB, nested `range(100000)`
loops ran for minutes, a recursive macro ended in a RecursionError traceback, and
`validate` said ok to all three. Now each fails that version with a reason, and
`validate` (which renders each version once) reports it as a content error, exit 2.
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from edition.content.limits import DocumentTooLarge, RenderTimeout, check_binop, watchdog

PAGE = ("<!doctype html><html lang=en><body>{% for a in articles %}{{ a.html }}{% endfor %}"
        "{% include 'extra.html.j2' ignore missing %}</body></html>\n")
CAMPAIGN = {"name": "x", "template": "page.html.j2",
            "slots": {"articles": {"kind": "article", "count": 1}},
            "formats": ["html"], "customers": "data/customers.csv",
            "limits": {"render_seconds": 2}}
CUSTOMERS = [{"id": f"C{i}", "email": f"c{i}@example.com", "first_name": "Ann"}
             for i in range(5)]

BODIES = {
    "huge-string": ("Hello {{ 'x' * 10**9 }}.\n", "too large"),
    "huge-filter": ("Hello {{ 'x' | center(10**9) }}.\n", "too large"),
    "nested-loops": ("{% for i in range(100000) %}{% for j in range(100000) %}"
                     "{% endfor %}{% endfor %}Done.\n", "longer than 2 s"),
}


@pytest.mark.parametrize("case", sorted(BODIES))
def test_a_runaway_module_is_a_content_error_in_validate(content_tree, cli, case: str) -> None:
    body, words = BODIES[case]
    root = content_tree(campaigns={"x.yaml": CAMPAIGN}, templates={"page.html.j2": PAGE},
                        articles={"a.md": {"title": "A", "body": body}},
                        customers={"customers.csv": CUSTOMERS})
    process = psutil.Process()
    rc, stdout, stderr = cli("validate", "campaigns/x.yaml", cwd=root, timeout=120)
    assert rc == 2, stdout + stderr
    assert words in stderr and "articles/a.md" in stderr, stderr
    assert "Traceback" not in stderr
    assert process.memory_info().rss < 2 << 30


def test_a_recursive_macro_is_a_content_error(content_tree, cli) -> None:
    page = ("{% macro down(n) %}{{ down(n + 1) }}{% endmacro %}<!doctype html><html lang=en>"
            "<body>{{ down(0) }}</body></html>\n")
    root = content_tree(campaigns={"x.yaml": CAMPAIGN}, templates={"page.html.j2": page},
                        articles={"a.md": {"title": "A"}}, customers={"customers.csv": CUSTOMERS})
    rc, stdout, stderr = cli("validate", "campaigns/x.yaml", cwd=root)
    assert rc == 2, stdout + stderr
    assert "recursion" in stderr and "templates/page.html.j2" in stderr


def test_a_run_fails_the_runaway_version_and_finishes(content_tree, cli, manifest_of) -> None:
    body = ("{% if customer.first_name == 'Slow' %}{% for i in range(100000) %}"
            "{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif %}Hi.\n")
    rows = [*CUSTOMERS, {"id": "S1", "email": "s1@example.com", "first_name": "Slow"}]
    root = content_tree(campaigns={"x.yaml": CAMPAIGN}, templates={"page.html.j2": PAGE},
                        articles={"a.md": {"title": "A", "body": body}},
                        customers={"customers.csv": rows})
    out = root / "out"
    rc, stdout, stderr = cli("run", "campaigns/x.yaml", "--out", str(out), cwd=root,
                             timeout=120)
    assert rc == 3, stdout + stderr  # finished, one customer failed
    status = {r["customer_id"]: (r["status"], r["reason_code"]) for r in manifest_of(out)}
    assert status["S1"] == ("failed", "too_slow")
    assert {s for cid, s in status.items() if cid != "S1"} == {("rendered", None)}


def test_size_checks_refuse_before_allocating() -> None:
    with pytest.raises(DocumentTooLarge):
        check_binop("*", "x", 10**9, 5_000_000)
    with pytest.raises(DocumentTooLarge):
        check_binop("**", 10, 10**10, 5_000_000)
    check_binop("*", "ab", 3, 5_000_000)
    check_binop("**", 1.05, 12, 5_000_000)


def test_the_watchdog_stops_a_loop_in_any_thread_and_leaves_nothing_behind() -> None:
    import threading
    import time

    stopped: list[str] = []

    def spin() -> None:
        try:
            with watchdog.limit(0.2):
                while True:
                    pass
        except RenderTimeout:
            stopped.append(threading.current_thread().name)

    thread = threading.Thread(target=spin, name="worker")
    thread.start()
    thread.join(60)
    spin()
    assert stopped == ["worker", "MainThread"]
    with watchdog.limit(0.2):
        time.sleep(0.01)
    time.sleep(0.4)  # no stray RenderTimeout arrives after the block ended


def test_limits_are_checked_in_the_campaign(content_tree) -> None:
    from edition.content.campaign import load_campaign
    from edition.errors import ContentError

    campaign = dict(CAMPAIGN, limits={"render_seconds": -1, "document_bytes": "big"})
    root = content_tree(campaigns={"x.yaml": campaign}, templates={"page.html.j2": PAGE},
                        articles={"a.md": {"title": "A"}})
    with pytest.raises(ContentError) as caught:
        load_campaign(Path(root) / "campaigns" / "x.yaml")
    assert "limits.render_seconds" in str(caught.value)
    assert "limits.document_bytes" in str(caught.value)


# -- issue 17, finding 13: one C call (replace, join, format, ~) cannot be interrupted ---

# Runs a command and reports its exit status, output and peak RSS (its own child only).
PEAK = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, encoding="utf-8")
print(json.dumps({"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                  "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""
PEAK_KIB = 400 << 10  # the CLI itself takes about 60 MiB; the runaways took 1.5-3 GiB

MULTIPLIERS = {
    "chained-replace-filter": ("{{ ('x' * 1000) | replace('x', 'x' * 1000) "
                               "| replace('x', 'x' * 1500) }}", "replace"),
    "chained-replace-method": ("{{ ('x' * 1000).replace('x', 'x' * 1000)"
                               ".replace('x', 'x' * 1500) }}", "replace"),
    "join-of-references": ("{{ (['x' * 4000000] * 400) | join }}", "join"),
    "format-repeats": ("{{ ('{0}' * 4000).format('x' * 400000) }}", "format"),
    "tilde-doubling": ("{% set ns = namespace(s='x' * 1000) %}{% for i in range(40) %}"
                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}", "~"),
    "percent-repeats": ("{{ '%(a)s' * 4000 % {'a': 'x' * 400000} }}", "%"),
    "captured-doubling": ("{% set ns = namespace(s='x' * 1000) %}{% for i in range(40) %}"
                          "{% set ns.s %}{{ ns.s }}{{ ns.s }}{% endset %}{% endfor %}"
                          "{{ ns.s | length }}", "captured block"),
}


def peak_cli(*args: str | Path, cwd: Path) -> dict:
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               NO_COLOR="1", PYTHONIOENCODING="utf-8")
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "cli",
                           *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          encoding="utf-8", timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("case", sorted(MULTIPLIERS))
def test_a_module_that_multiplies_a_string_stops_the_run_with_little_memory(
        content_tree, case: str) -> None:
    body, words = MULTIPLIERS[case]
    campaign = dict(CAMPAIGN, limits={"render_seconds": 60})  # size, not time, must stop it
    root = content_tree(campaigns={"x.yaml": campaign}, templates={"page.html.j2": PAGE},
                        articles={"a.md": {"title": "A", "body": f"Hello {body}.\n"}},
                        customers={"customers.csv": CUSTOMERS})
    done = peak_cli("run", "campaigns/x.yaml", "--out", root / "out", cwd=root)
    assert done["rc"] == 2, done  # a content error: nothing is rendered
    assert "articles/a.md" in done["stderr"] and "too large" in done["stderr"], done
    assert words in done["stderr"], done   # says what would have been too large
    assert "Traceback" not in done["stderr"]
    assert done["peak_kib"] < PEAK_KIB, f"{done['peak_kib'] >> 10:,} MiB"


def test_a_customer_whose_value_multiplies_fails_alone_with_little_memory(
        content_tree, manifest_of) -> None:
    body = ("{% if customer.first_name == 'Big' %}{{ (customer.first_name * 300) "
            "| replace('Big', 'x' * 5000) | replace('x', customer.first_name * 100) }}"
            "{% endif %}Hi {{ customer.first_name }}.\n")
    rows = [*CUSTOMERS, {"id": "B1", "email": "b1@example.com", "first_name": "Big"}]
    root = content_tree(campaigns={"x.yaml": CAMPAIGN}, templates={"page.html.j2": PAGE},
                        articles={"a.md": {"title": "A", "body": body}},
                        customers={"customers.csv": rows})
    out = root / "out"
    done = peak_cli("run", "campaigns/x.yaml", "--out", out, cwd=root)
    assert done["rc"] == 3, done  # the run finished; one customer failed
    status = {r["customer_id"]: (r["status"], r["reason_code"]) for r in manifest_of(out)}
    assert status["B1"] == ("failed", "too_large")
    reason = next(r["reason"] for r in manifest_of(out) if r["customer_id"] == "B1")
    assert "replace" in reason
    assert {s for cid, s in status.items() if cid != "B1"} == {("rendered", None)}
    assert done["peak_kib"] < PEAK_KIB, f"{done['peak_kib'] >> 10:,} MiB"


def test_ordinary_uses_of_the_bounded_operations_still_work() -> None:
    from edition.content.environment import EditionEnvironment

    env = EditionEnvironment()
    cases = {
        "{{ 'a-b' | replace('-', '+') }} {{ 'a-b'.replace('-', '') }}": "a+b ab",
        "{{ ['a', 'b'] | join(', ') }} {{ '/'.join(['a', 'b']) }}": "a, b a/b",
        "{{ '%s=%05.1f' | format('pi', 3.14159) }} {{ '%(n)s!' % {'n': 'hi'} }}":
            "pi=003.1 hi!",
        "{{ '{} {:>4}'.format('a', 'b') }} {{ '{x}'.format_map({'x': 1}) }}": "a    b 1",
        "{{ 'a' ~ 1 ~ [2] }} {{ 'ab'.center(6, '*') }}": "a1[2] **ab**",
        "{% set x %}{{ 'a' * 3 }}{% endset %}{{ x }} {{ 'a\nb' | indent(2) }}": "aaa a\n  b",
        "{{ [1, 'x'] }} {{ {'k': [1]} | tojson }}": "[1, 'x'] {\"k\": [1]}",
    }
    for source, expected in cases.items():
        assert env.from_string(source).render() == expected, source


def test_the_size_checks_keep_personal_text_shareable(content_tree) -> None:
    """`~`, `join` and printing are measured without refusing text with holes: one shared
    render per version, byte for byte the whole render."""
    import datetime as dt

    from edition.render.plan import Plan

    page = ("<!doctype html><html lang=en><body>{% for a in articles %}"
            "{{ a.html }} {{ [a.title, a.kind] | join('-') ~ '!' }}{% endfor %}</body></html>\n")
    root = content_tree(campaigns={"x.yaml": CAMPAIGN}, templates={"page.html.j2": page},
                        articles={"a.md": {"title": "A", "body": "Hi {{ customer.first_name }}"
                                                                 ".\n"}})
    plan = Plan.load(root / "campaigns" / "x.yaml", as_of=dt.date(2026, 11, 2))
    for person in CUSTOMERS[:2]:
        fields = dict(person, first_name=person["id"])
        version = plan.version_of(fields)[3]
        rendered = plan.renderer.render(version, fields)
        assert rendered.html == plan.renderer.whole(version, fields).html
        assert f"Hi {person['id']}.</p> A-article!" in (rendered.html or "")
    assert plan.renderer.sharing_of([version.digest])[version.digest]["html"] == "shared"
