# ruff: noqa: E501  (templates are easier to read on one line)
"""THE property: what the engine shares between customers never changes a byte.

For any customer, `EditionRenderer.render` (the version rendered once, the personal
layer filled in) must equal `EditionRenderer.whole` (the whole template rendered for
that customer alone) for the HTML page, the inlined HTML, the text and the subject — or
both must fail with the same reason. Checked with hypothesis over the sample newsletter
and invoice campaigns and over small templates written to poke at the personal layer:
holes in text and in attributes, filters on customer fields, a module body that reads
the customer, unescaped values, and templates the probe cannot share (those must take the
whole-render fallback and still give the same bytes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edition.audience.customers import read_customers
from edition.render.editions import EditionRenderer, Rendered, RenderFailure
from edition.render.plan import Plan

AS_OF = dt.date(2026, 11, 2)
KINDS = ("page", "html", "text", "subject")

NASTY = [
    "<script>alert('x')</script>", "O'Brien & \"Sons\"", "Ann\r\nBcc: victim@evil.example",
    "Ann\nX-Injected: 1", "שלום עולם", "مرحبا", "🎉 Zoë 👩‍👩‍👧", "a\u00a0b", "&amp; &copy; &#x41;",
    "</p><p class=x>", "\" onmouseover=\"alert(1)", "' autofocus '", "  spaced  ", "\t", "",
    "\ue000\ue001", "\ue0000\ue001", "{{ customer.id }}", "a\x00b\x1b[31m", "x" * 300,
]
TEXT = st.one_of(st.text(max_size=40), st.sampled_from(NASTY))
MAYBE = st.none() | TEXT          # None: the field is missing
CHECK = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(renderer: EditionRenderer, version: Any, fields: dict[str, Any],
            path: Callable[..., Rendered]) -> Rendered | str:
    try:
        return path(version, fields)
    except RenderFailure as exc:
        return f"failed: {exc}"


def assert_same(plan: Plan, renderer: EditionRenderer, fields: dict[str, Any]) -> Rendered | str:
    version = plan.version_of(fields)[3]
    whole = outcome(renderer, version, fields, renderer.whole)
    shared = outcome(renderer, version, fields, renderer.render)
    if isinstance(whole, str) or isinstance(shared, str):
        assert shared == whole
        return whole
    for kind in KINDS:
        assert getattr(shared, kind) == getattr(whole, kind), (kind, fields)
    return whole


def with_values(fields: dict[str, Any], **values: Any) -> dict[str, Any]:
    out = dict(fields)
    for key, value in values.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# -- the sample campaigns ----------------------------------------------------------------


class Sample:
    def __init__(self, root: Path, customers: Path, campaign: str):
        self.plan = Plan.load(root / "campaigns" / campaign, as_of=AS_OF)
        self.renderer = EditionRenderer(self.plan.campaign, AS_OF, kinds=KINDS)
        self.customers = [dict(r.fields) for r in read_customers(customers, need_email=True)
                          if not r.rejected]
        for fields in self.customers:  # every version built (and self-checked) once
            self.renderer.render(self.plan.version_of(fields)[3], fields)


@pytest.fixture(scope="module")
def newsletter(sample_root: Path, sample_customers: Path) -> Sample:
    return Sample(sample_root, sample_customers, "weekly-newsletter.yaml")


@pytest.fixture(scope="module")
def invoice(sample_root: Path, sample_customers: Path) -> Sample:
    return Sample(sample_root, sample_customers, "invoice.yaml")


@pytest.mark.parametrize("name", ["newsletter", "invoice"])
def test_sample_campaigns_really_share(name: str, request: pytest.FixtureRequest) -> None:
    sample: Sample = request.getfixturevalue(name)
    sharing = sample.renderer.sharing()
    assert len(sharing) > 1
    for kinds in sharing.values():
        assert kinds["html"] == kinds["text"] == kinds["subject"] == "shared", kinds
    for fields in sample.customers:
        assert_same(sample.plan, sample.renderer, fields)


@CHECK
@given(data=st.data(), first=MAYBE, last=MAYBE, customer_id=TEXT.filter(str.strip))
def test_newsletter_shared_equals_whole(newsletter: Sample, data: st.DataObject,
                                        first: str | None, last: str | None,
                                        customer_id: str) -> None:
    fields = data.draw(st.sampled_from(newsletter.customers))
    assert_same(newsletter.plan, newsletter.renderer,
                with_values(fields, first_name=first, last_name=last, id=customer_id))


@CHECK
@given(data=st.data(), first=MAYBE, number=MAYBE,
       total=st.none() | st.floats(-1e7, 1e7) | st.integers(-10**9, 10**9) | TEXT,
       due=st.none() | st.dates() | TEXT)
def test_invoice_shared_equals_whole(invoice: Sample, data: st.DataObject, first: str | None,
                                     number: str | None, total: Any, due: Any) -> None:
    fields = data.draw(st.sampled_from(invoice.customers))
    assert_same(invoice.plan, invoice.renderer,
                with_values(fields, first_name=first, invoice_number=number, total=total,
                            due_date=due))


# -- templates of our own ------------------------------------------------------------------

STYLE = "<style>p { color: #333; } .name { font-weight: bold; } a { color: #b3541e; }</style>"
HOLES = """\
<!DOCTYPE html>
<html lang="{{ locale }}"><head><meta charset="utf-8"><title>Hi {{ customer.first_name | default('you') }}</title>STYLE</head>
<body>
<p class="name" title="{{ customer.first_name | default('friend') }}" data-last='{{ customer.last_name | default("") }}'>Hello {{ customer.first_name | default('friend') }}!</p>
<p>{{ customer.first_name | default('x') | upper }} / {{ customer.last_name | default('y') | title }} / {{ customer.bio | default('no bio') | truncate(12) }}</p>
<p>Balance: {{ customer.balance | default(0) | money }} ({{ customer.balance | default(0) | money('EUR') }})</p>
<p>Raw: {{ customer.bio | default('') | safe }}</p>
<a href="https://acme.example/u?id={{ customer.id | urlencode }}&amp;n={{ customer.first_name | default('') | urlencode }}">link</a>
<table><tr><td>{{ customer.last_name | default('') }}</td></tr></table>
{% for a in articles %}<div class="article"><h2>{{ a.title }}</h2>{{ a.html }}</div>{% endfor %}
</body></html>
""".replace("STYLE", STYLE)

HOLES_TEXT = """\
Hi {{ customer.first_name | default('friend') }},
{% for a in articles %}
{{ a.title }}
{{ a.text }}
{% endfor %}
Bye {{ customer.last_name | default('') | upper }} {{ customer.bio | default('') | truncate(20) }}
"""


def page(body: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">{STYLE}</head><body>\n{body}\n"
            "{% for a in articles %}<div>{{ a.html }}</div>{% endfor %}\n</body></html>\n")


UNSHAREABLE = {
    "if": page("<p>{% if customer.vip | default(false) %}VIP {{ customer.first_name | "
               "default('') }}{% else %}Dear {{ customer.first_name | default('reader') }}"
               "{% endif %}</p>"),
    "concat": page("<p>{{ customer.first_name | default('') ~ ' ' ~ customer.last_name | "
                   "default('') }}</p>"),
    "defined": page("<p>{{ customer.first_name is defined }} "
                    "{{ customer.first_name | default('?') }}</p>"),
    "placement": page("<pre>{{ customer.first_name | default('') }}</pre>"
                      "<p title={{ customer.last_name | default('x') }}>unquoted</p>"),
}
ARTICLES = {
    "personal.md": {"title": "For you & yours", "priority": 5,
                    "body": "Dear {{ customer.first_name }}, *welcome* & enjoy <b>this</b>.\n"},
    "plain.md": {"title": "Plain <simple> news", "body": "Nothing personal here: 1 < 2.\n"},
}


def campaign(name: str, template: str, text_template: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name, "template": template,
        "subject": "{{ customer.first_name | default('Hello') }}, news for "
                   "{{ customer.last_name | default('you') | title }}",
        "sender": "Acme <news@acme.example>",
        "slots": {"articles": {"kind": "article", "count": 2}},
        "formats": ["html", "text", "eml"],
    }
    if text_template:
        spec["text_template"] = text_template
    return spec


class Own:
    def __init__(self, root: Path, name: str):
        self.plan = Plan.load(root / "campaigns" / f"{name}.yaml", as_of=AS_OF)
        self.renderer = EditionRenderer(self.plan.campaign, AS_OF, kinds=KINDS)
        prime = {"id": "p1", "first_name": "Pat", "last_name": "Lee", "locale": "en",
                 "interests": []}
        self.version = self.plan.version_of(prime)[3]
        self.renderer.render(self.version, prime)

    def sharing(self) -> dict[str, str]:
        return self.renderer.sharing()[self.version.id]


@pytest.fixture(scope="module")
def own(shared_content_tree) -> dict[str, Own]:
    templates = {"holes.html.j2": HOLES, "holes.txt.j2": HOLES_TEXT}
    campaigns = {"holes.yaml": campaign("holes", "holes.html.j2", "holes.txt.j2")}
    for name, source in UNSHAREABLE.items():
        templates[f"{name}.html.j2"] = source
        campaigns[f"{name}.yaml"] = campaign(name, f"{name}.html.j2")
    root = shared_content_tree(name="own", campaigns=campaigns, templates=templates,
                               articles=ARTICLES)
    return {name: Own(root, name) for name in ["holes", *UNSHAREABLE]}


def test_own_holes_template_is_shared(own: dict[str, Own]) -> None:
    sharing = own["holes"].sharing()
    assert sharing["html"] == sharing["text"] == sharing["subject"] == "shared", sharing


@pytest.mark.parametrize("name", sorted(UNSHAREABLE))
def test_templates_the_probe_cannot_share_fall_back_to_whole(own: dict[str, Own],
                                                             name: str) -> None:
    sharing = own[name].sharing()
    assert sharing["html"] != "shared", sharing
    if name != "placement":  # the page itself is fine there; parsing it is not
        assert sharing["page"] != "shared", sharing
    assert sharing["subject"] == "shared"


CUSTOMER = st.fixed_dictionaries(
    {"id": TEXT.filter(str.strip)},
    optional={"first_name": TEXT, "last_name": TEXT, "bio": TEXT,
              "balance": st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-10**6, 10**6)
              | TEXT,
              "vip": st.booleans() | TEXT},
).map(lambda d: d | {"locale": "en", "interests": []})


@CHECK
@given(fields=CUSTOMER)
def test_own_templates_shared_equals_whole(own: dict[str, Own], fields: dict[str, Any]) -> None:
    for name in ("holes", *UNSHAREABLE):
        assert_same(own[name].plan, own[name].renderer, fields)


def test_module_body_reading_a_missing_field_fails_the_same_way(own: dict[str, Own]) -> None:
    subject = own["holes"]
    result = assert_same(subject.plan, subject.renderer, {"id": "x", "locale": "en",
                                                          "interests": []})
    assert isinstance(result, str) and "customer has no field 'first_name'" in result
