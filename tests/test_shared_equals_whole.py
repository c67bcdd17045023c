# ruff: noqa: E501  (templates are easier to read on one line)
"""THE property: what the engine shares between customers never changes a byte.

For any customer, `EditionRenderer.render` (the version rendered once, the personal
layer filled in) must equal `EditionRenderer.whole` (the whole template rendered for
that customer alone) for the HTML page, the inlined HTML, the text and the subject — or
both must fail with the same reason. Checked with hypothesis over the sample newsletter
and invoice campaigns and over small templates written to poke at the personal layer:
holes in text and in attributes, filters on customer fields, a module body that reads
the customer, unescaped values; the idioms teams write (issue 19): a `lang` from the
customer's locale, `{% if customer.first_name %}…{% else %}…{% endif %}`, `is defined
and > 0`, `{% if customer.city %}`, a customer id in a link, loops over a customer's
orders, names set from the customer or under a test on it, macros called with customer
values, a personal module printed under a test, an include under a test. Those are
rendered once now (partial evaluation); what still cannot be (a value first in a
<pre>) takes the whole-render fallback and still gives the same bytes.
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
from edition.render.skeleton import Hole, Piece

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


FORMERLY_UNSHAREABLE = {  # the probe alone could not share these; partial evaluation can
    "if": page("<p>{% if customer.vip | default(false) %}VIP {{ customer.first_name | "
               "default('') }}{% else %}Dear {{ customer.first_name | default('reader') }}"
               "{% endif %}</p>"),
    "concat": page("<p>{{ customer.first_name | default('') ~ ' ' ~ customer.last_name | "
                   "default('') }}</p>"),
    "defined": page("<p>{{ customer.first_name is defined }} "
                    "{{ customer.first_name | default('?') }}</p>"),
    # a module body that reads the customer, stripped to a lead paragraph (the Foundation
    # port's <p class="lead">): striptags and truncate read the whole filled-in text
    "striptags": page("{% for a in articles %}<p class=\"lead\">{{ a.html | striptags | "
                      "truncate(24) }}</p><p>{{ a.html | striptags | upper }}</p>{% endfor %}"),
}
# Values in class and id attributes, next to the template's own words, with CSS that
# selects on classes, ids, (Apple Mail's) attribute selectors that name no held attribute,
# and (Foundation's) attribute selectors that compare the class attribute with a value.
CLASSES = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><style>.points { color: red; } "
           ".vip { font-weight: bold; } .pointsgold { color: gold; } #hero { margin: 0; } "
           "p:not([class*=large-offset]) { padding: 1px; } a[href] { color: blue; } "
           "a[x-apple-data-detectors] { color: inherit; } div[style*=\"margin: 16px 0\"] "
           "{ margin: 0; }</style></head><body>\n"
           "<p class=\"points{{ customer.tier | default('') }}\">a</p>"
           "<p class=\"x {{ customer.tier | default('') }} y\">b</p>"
           "<p class=\"{% if customer.vip %}vip{% else %}plain{% endif %}\">c</p>"
           "<p id=\"{{ customer.nickname | default('top') }}\">d</p>"
           "<a href=\"https://shop.example/?id={{ customer.id | urlencode }}\">e</a>\n"
           "{% for a in articles %}<div>{{ a.html }}</div>{% endfor %}\n</body></html>\n")
PLACEMENT = page("<pre>{{ customer.first_name | default('') }}</pre>"
                 "<p title={{ customer.last_name | default('x') }}>unquoted</p>")

# Statements the version decides (a test on the campaign, a loop over the version's
# articles) around what reads the customer: only the reads are cut out, as holes, and
# a test on the customer inside the loop as a fragment that sees the loop where it stands.
DECIDED = page("{% if campaign.name %}<p class=\"name\">Hello {{ customer.first_name | "
               "default('friend') }}</p>{% else %}<p>never</p>{% endif %}\n"
               "{% for a in articles %}<div><h2>{{ loop.index }}. {{ a.title }}</h2>"
               "<a href=\"https://shop.example/a/{{ loop.index }}?c={{ customer.id | urlencode }}"
               "\">{{ customer.first_name | default('read') }}</a>{% if customer.vip %}<b>"
               "{{ loop.cycle('odd', 'even') }} {{ a.title }}</b>{% endif %}</div>"
               "{% else %}<p>nothing for {{ customer.first_name | default('you') }}</p>"
               "{% endfor %}\n{% for i in range(3) if i > 0 %}<i>{{ customer.last_name | "
               "default('') }}{{ i }}</i>{% endfor %}")

# The idioms of issue 19, as teams write them (not to our rule of thumb).
IDIOMS = """\
{% macro button(url, label) %}<a class="btn" href="{{ url }}">{{ label }}</a>{% endmacro %}
<!DOCTYPE html>
<html lang="{{ customer.locale | default('en') }}">
<head><meta charset="utf-8"><title>{% if customer.first_name %}{{ customer.first_name | title }}, news{% else %}News{% endif %}</title>
<style>p { margin: 0 0 8px; } .points { color: #0a0; } td { padding: 2px; } .btn { color: #fff; }</style></head>
<body>
<p class="greeting">{% if customer.first_name %}Hi {{ customer.first_name | title }}{% else %}Hi there{% endif %},</p>
{% if customer.points is defined and customer.points > 0 %}
<p class="points">You have {{ customer.points }} points.</p>
{% endif %}
{% if customer.city %}<p>Visit our store in {{ customer.city }}.</p>{% endif %}
{% set name = customer.nickname or customer.first_name | default('friend') %}
<p>Dear {{ name }},</p>
{% if customer.vip %}{% set tier = 'gold' %}{% else %}{% set tier = 'blue' %}{% endif %}
<p class="tier-{{ tier }}">Your tier: {{ tier | upper }}</p>
<table class="orders"><tbody>
{% for o in customer.orders %}<tr><td>{{ loop.index }}</td><td>{{ o.number }}</td><td>{{ o.total }}</td></tr>
{% else %}<tr><td>No orders yet</td></tr>
{% endfor %}
</tbody></table>
{% set ns = namespace(total=0) %}
{% for o in customer.orders %}{% if o.total is number %}{% set ns.total = ns.total + o.total %}{% endif %}{% endfor %}
<p>Spent: {{ ns.total }}</p>
{% for a in articles %}<div class="article"><h2>{{ a.title }}</h2>{% if customer.vip %}<b>#{{ loop.index }} for {{ customer.first_name | default('you') }}</b>{% endif %}{{ a.html }}</div>
{% endfor %}
{% if customer.vip %}<div class="again">{{ articles[0].html }}</div>{% endif %}
{% if customer.city %}{% include 'store.html.j2' %}{% endif %}
<p>{{ button('https://shop.example/account?id=' ~ customer.id | urlencode, 'My account') }}</p>
<p><a href="https://shop.example/u?id={{ customer.id | urlencode }}&amp;src=email">Open in a browser</a></p>
</body></html>
"""
STORE = "<p class=\"store\">Our {{ customer.city | title }} store opens at nine.</p>\n"
IDIOMS_TEXT = """\
{% if customer.first_name %}Hi {{ customer.first_name | title }}{% else %}Hi there{% endif %},
{% if customer.points is defined and customer.points > 0 %}You have {{ customer.points }} points.
{% endif %}
{% for o in customer.orders %}- order {{ o.number }}: {{ o.total }}
{% else %}No orders yet.
{% endfor %}
{% for a in articles %}{{ a.title }}
{{ a.text }}
{% endfor %}
"""
IDIOMS_SUBJECT = ("{% if customer.first_name %}{{ customer.first_name | title }}, {% endif %}"
                  "{{ customer.points | default(0) }} points inside")

# `campaign.subject` in the page and the text: the customer's subject line as rendered,
# never the subject's template source (a newcomer's <title>{{ campaign.subject }}</title>)
SUBJECT_PAGE = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{{ campaign.subject }}"
                "</title>" + STYLE + "</head><body>\n<p class=\"lead\">{{ campaign.subject }}</p>"
                "{% if customer.vip %}<p>VIP: {{ campaign.subject | upper }}</p>{% endif %}\n"
                "{% for a in articles %}<div>{{ a.html }}</div>{% endfor %}\n</body></html>\n")
SUBJECT_TEXT = "{{ campaign.subject }}\n{% for a in articles %}{{ a.title }}\n{% endfor %}"

ARTICLES = {
    "personal.md": {"title": "For you & yours", "priority": 5,
                    "body": "Dear {{ customer.first_name }}, *welcome* & enjoy <b>this</b>.\n"},
    "plain.md": {"title": "Plain <simple> news", "body": "Nothing personal here: 1 < 2.\n"},
}


def campaign(name: str, template: str, text_template: str | None = None,
             subject: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name, "template": template,
        "subject": subject or "{{ customer.first_name | default('Hello') }}, news for "
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
    templates = {"holes.html.j2": HOLES, "holes.txt.j2": HOLES_TEXT,
                 "idioms.html.j2": IDIOMS, "idioms.txt.j2": IDIOMS_TEXT, "store.html.j2": STORE,
                 "placement.html.j2": PLACEMENT, "classes.html.j2": CLASSES,
                 "subject.html.j2": SUBJECT_PAGE, "subject.txt.j2": SUBJECT_TEXT,
                 "decided.html.j2": DECIDED}
    campaigns = {"holes.yaml": campaign("holes", "holes.html.j2", "holes.txt.j2"),
                 "idioms.yaml": campaign("idioms", "idioms.html.j2", "idioms.txt.j2",
                                         IDIOMS_SUBJECT),
                 "placement.yaml": campaign("placement", "placement.html.j2"),
                 "classes.yaml": campaign("classes", "classes.html.j2"),
                 "subject.yaml": campaign("subject", "subject.html.j2", "subject.txt.j2",
                                          IDIOMS_SUBJECT),
                 "decided.yaml": campaign("decided", "decided.html.j2")}
    for name, source in FORMERLY_UNSHAREABLE.items():
        templates[f"{name}.html.j2"] = source
        campaigns[f"{name}.yaml"] = campaign(name, f"{name}.html.j2")
    root = shared_content_tree(name="own", campaigns=campaigns, templates=templates,
                               articles=ARTICLES)
    return {name: Own(root, name) for name in [*OWN]}


OWN = ["holes", "idioms", "placement", "classes", "subject", "decided", *FORMERLY_UNSHAREABLE]


@pytest.mark.parametrize("name", ["holes", "idioms", "subject", *FORMERLY_UNSHAREABLE])
def test_own_templates_are_rendered_once(own: dict[str, Own], name: str) -> None:
    sharing = own[name].sharing()
    assert set(sharing.values()) == {"shared"}, sharing


def test_campaign_subject_is_the_customers_subject_line(own: dict[str, Own]) -> None:
    subject = own["subject"]
    fields = {"id": "x1", "first_name": "ann <b>", "points": 3, "vip": True, "locale": "en",
              "interests": []}
    whole = subject.renderer.whole(subject.version, fields)
    assert whole.subject == "Ann <B>, 3 points inside"
    assert whole.page is not None and whole.text is not None
    assert "<title>Ann &lt;B&gt;, 3 points inside</title>" in whole.page
    assert "<p>VIP: ANN &lt;B&gt;, 3 POINTS INSIDE</p>" in whole.page
    assert whole.text.startswith("Ann <B>, 3 points inside\n")
    assert "{{" not in whole.page + whole.text
    shared = subject.renderer.render(subject.version, fields)
    assert (shared.page, shared.html, shared.text) == (whole.page, whole.html, whole.text)
    assert set(shared.paths.values()) == {"shared"}, shared.paths


def test_statements_the_version_decides_leave_only_the_customer_reads(
        own: dict[str, Own]) -> None:
    """`{% if campaign.x %}` or `{% for a in articles %}` around a customer's value is
    decided once per version: its prints are holes, not a fragment run per customer."""
    subject = own["decided"]
    assert subject.sharing() == {kind: "shared" for kind in KINDS}
    page = subject.renderer.shared(subject.version).residuals["page"]
    pieces = [slot.where for slot in page.slots if isinstance(slot, Piece)]
    # only `{% if customer.vip %}`, once per article (two articles in the version)
    assert len(pieces) == 2 and all(where.endswith("decided.html.j2:4") for where in pieces)
    # hello, per article its link and name, the two <i>, the personal article's body
    assert sum(isinstance(slot, Hole) for slot in page.slots) == 1 + 2 * 2 + 2 + 1
    for fields in ({"id": "a&b", "first_name": "Zoë", "vip": True, "last_name": "<O'Neil>"},
                   {"id": "7", "vip": False}):
        assert_same(subject.plan, subject.renderer, fields | {"locale": "en", "interests": []})


def test_a_value_first_in_a_pre_inlines_per_customer_and_says_where(own: dict[str, Own]) -> None:
    subject = own["placement"]
    assert set(subject.sharing().values()) == {"shared"}  # the page is; inlining it is not
    fields = {"id": "x1", "first_name": "Ann", "last_name": "Lee", "locale": "en",
              "interests": []}
    rendered = subject.renderer.render(subject.version, fields)
    assert rendered.html == subject.renderer.whole(subject.version, fields).html
    assert "starts a <pre>" in rendered.paths["html"]
    assert "templates/placement.html.j2:3" in rendered.paths["html"]
    assert rendered.paths["text"] == rendered.paths["subject"] == "shared"


NUMBER = st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-10**6, 10**6)
ORDER = st.fixed_dictionaries({"number": TEXT | st.integers(0, 10**6), "total": NUMBER | TEXT})
# most customers render (the personal module prints first_name); some fail, both ways


def mostly(usual: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """`usual` nine times in ten, `odd` otherwise (values a template may choke on)."""
    return st.tuples(st.integers(0, 9), usual, odd).map(lambda t: t[2] if t[0] == 0 else t[1])


CUSTOMER = st.fixed_dictionaries(
    {"id": TEXT.filter(str.strip), "first_name": mostly(TEXT, st.none())},
    optional={"last_name": TEXT, "bio": TEXT, "nickname": TEXT | st.sampled_from(["hero", "a hero"]),
              "city": TEXT, "points": mostly(NUMBER, TEXT | st.none()),
              "tier": st.sampled_from(["", "gold", " vip", "vip x", "points", "hero"]) | TEXT,
              "balance": NUMBER | TEXT,
              "vip": st.booleans() | TEXT,
              "orders": mostly(st.lists(ORDER, max_size=4), TEXT)},
).map(lambda d: {k: v for k, v in d.items() if v is not None or k == "points"}
       | {"locale": "en", "interests": []})


@CHECK
@given(fields=CUSTOMER)
def test_own_templates_shared_equals_whole(own: dict[str, Own], fields: dict[str, Any]) -> None:
    for name in OWN:
        assert_same(own[name].plan, own[name].renderer, fields)


@CHECK
@given(fields=CUSTOMER, locale=st.sampled_from(["en", "es", "en-GB"]))
def test_idioms_shared_equals_whole_in_any_locale(own: dict[str, Own], fields: dict[str, Any],
                                                  locale: str) -> None:
    subject = own["idioms"]
    result = assert_same(subject.plan, subject.renderer, fields | {"locale": locale})
    if not isinstance(result, str):  # the locale is the version's: a constant, folded
        assert f'<html lang="{locale}">' in result.page


def test_idioms_take_the_shared_path(own: dict[str, Own]) -> None:
    subject = Own(own["idioms"].plan.campaign.root, "idioms")  # its own shapes, none yet
    customers = [
        {"id": "a", "first_name": "ann", "points": 3, "city": "Leeds", "vip": True,
         "orders": [{"number": 1, "total": 5}, {"number": 2, "total": 7.5}]},
        {"id": "b", "first_name": "bo", "orders": []},
        {"id": "c", "first_name": "", "nickname": "Cee", "points": 0, "city": "", "vip": False},
        {"id": "d&<x>", "first_name": "O'Brien & \"Sons\"", "city": "Zürich",
         "orders": [{"number": "#9", "total": "n/a"}]},
    ]
    for fields in customers:
        fields |= {"locale": "en", "interests": []}
        version = subject.plan.version_of(fields)[3]
        rendered = subject.renderer.render(version, fields)
        assert set(rendered.paths.values()) == {"shared"}, (fields, rendered.paths)
        whole = subject.renderer.whole(version, fields)
        for kind in KINDS:
            assert getattr(rendered, kind) == getattr(whole, kind), kind
    page = subject.renderer.render(version, customers[0]).page
    assert "Hi Ann," in page and "You have 3 points." in page and "Leeds store" in page


@pytest.mark.parametrize("name", ["idioms", "holes"])
def test_sharing_does_not_depend_on_the_formats(shared_content_tree, own: dict[str, Own],
                                                name: str) -> None:
    """--formats pdf alone, html alone, text alone, eml alone or all: the same verdicts."""
    from edition.render.plan import render_kinds

    root = own[name].plan.campaign.root
    fields = {"id": "f1", "first_name": "Pat", "points": 2, "city": "Leeds",
              "orders": [{"number": 1, "total": 2}], "locale": "en", "interests": []}
    verdicts = {}
    for formats in [("pdf",), ("html",), ("text",), ("eml",), ("html", "text", "eml", "pdf")]:
        plan = Plan.load(root / "campaigns" / f"{name}.yaml", formats=formats, as_of=AS_OF)
        version = plan.version_of(fields)[3]
        rendered = plan.renderer.render(version, fields)
        verdicts[formats] = plan.renderer.sharing()[version.id]
        assert set(rendered.paths) == set(render_kinds(formats))
        assert set(rendered.paths.values()) == {"shared"}, (formats, rendered.paths)
    assert len({tuple(sorted(v.items())) for v in verdicts.values()}) == 1, verdicts


def test_module_body_reading_a_missing_field_fails_the_same_way(own: dict[str, Own]) -> None:
    subject = own["holes"]
    result = assert_same(subject.plan, subject.renderer, {"id": "x", "locale": "en",
                                                          "interests": []})
    assert isinstance(result, str) and "customer has no field 'first_name'" in result


def test_values_in_class_and_id_share_unless_they_name_what_the_css_selects(
        own: dict[str, Own]) -> None:
    """Cerberus-style CSS (attribute selectors for Apple Mail) and Foundation's
    (`:not([class*=large-offset])`, `a[href]`) no longer send every customer down the
    per-customer inlining. A value that makes a selected class or id (`points` + `gold` =
    `.pointsgold`, ` vip`, `hero`) or holds a compared value (`large-offset-1`) decides
    how the page is inlined: a short one becomes part of the customer's shape (inlined
    once for all who wrote it); a long one is inlined alone. Byte-identical either way."""
    subject = own["classes"]
    base = {"id": "c1", "first_name": "Ann", "locale": "en", "interests": []}
    long_vip = "x" * 50 + " vip"
    for values, path in [({"tier": "-plain"}, "shared"),
                         ({}, "shared"),  # `points` alone is selected: its own shape
                         ({"tier": "-x", "vip": False}, "shared"),
                         ({"tier": "-x", "vip": True}, "shared"),
                         ({"tier": "gold"}, "shared"),
                         ({"tier": " vip"}, "shared"),
                         ({"nickname": "hero"}, "shared"),
                         ({"tier": " large-offset-1"}, "shared"),
                         ({"tier": "large-"}, "shared"),
                         ({"tier": "large-", "id": "offset"}, "shared"),
                         ({"tier": long_vip}, "html inlined per customer"),
                         ({"tier": "<b> vip"}, "shared")]:
        fields = base | values
        version = subject.plan.version_of(fields)[3]
        for _ in range(2):  # the first of a shape is checked against inlining it whole
            rendered = subject.renderer.render(version, fields)
            whole = subject.renderer.whole(version, fields)
            assert rendered.html == whole.html, values
            assert rendered.paths["html"].startswith(path), (values, rendered.paths)
    assert 'class="pointsgold" style="color: gold' in subject.renderer.whole(
        version, base | {"tier": "gold"}).html
    offset = subject.renderer.whole(version, base | {"tier": " large-offset-1"}).html
    assert '<p class="x  large-offset-1 y">b</p>' in offset  # no padding: not selected


# -- the outside corpus: popular open-source layouts (tests/corpus/templates) -------------


class Corpus:
    def __init__(self, root: Path, name: str, customers: list[dict[str, Any]]):
        self.plan = Plan.load(root / "campaigns" / f"{name}.yaml", as_of=AS_OF)
        self.renderer = EditionRenderer(self.plan.campaign, AS_OF, kinds=KINDS)
        self.customers = customers


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Corpus]:
    from fixtures_corpus import NAMES, corpus_customers, corpus_site

    root = corpus_site(tmp_path_factory.mktemp("corpus") / "site")
    customers = list(corpus_customers(120))
    return {name: Corpus(root, name, customers) for name in NAMES}


def test_the_corpus_is_rendered_once_and_byte_identical(corpus: dict[str, Corpus]) -> None:
    """Every layout, every customer: the shared render equals the whole one, and every
    customer took the shared path for the page, the inlined html, the text and subject."""
    from fixtures_corpus import NAMES

    assert len(NAMES) >= 4
    for name, subject in corpus.items():
        paths: dict[str, int] = {}
        for fields in subject.customers:
            result = assert_same(subject.plan, subject.renderer, fields)
            assert not isinstance(result, str), (name, result)
            rendered = subject.renderer.render(subject.plan.version_of(fields)[3], fields)
            for how in rendered.paths.values():
                paths[how] = paths.get(how, 0) + 1
        assert set(paths) == {"shared"}, (name, paths)


CORPUS_CUSTOMER = st.fixed_dictionaries(
    {"id": TEXT.filter(str.strip), "first_name": mostly(TEXT, st.none()),
     "locale": st.sampled_from(["en", "es", "en-GB", "fr"])},
    optional={"last_name": TEXT, "city": TEXT | st.sampled_from(["", "Leeds"]),
              "points": mostly(NUMBER, TEXT | st.none()), "vip": st.booleans() | TEXT,
              "orders": mostly(st.lists(st.fixed_dictionaries(
                  {"number": TEXT | st.integers(0, 10**6)},
                  optional={"description": TEXT, "amount": NUMBER}), max_size=3), TEXT),
              "total": NUMBER | TEXT, "card_last_four": TEXT, "receipt_id": TEXT,
              "life_stage": st.sampled_from(["expecting", "family", "single"]),
              "age": st.integers(18, 99), "lifetime_value": NUMBER, "tenure_months": NUMBER},
).map(lambda d: {k: v for k, v in d.items() if v is not None or k == "points"}
      | {"interests": ["travel"]})


@CHECK
@given(fields=CORPUS_CUSTOMER)
def test_corpus_shared_equals_whole(corpus: dict[str, Corpus], fields: dict[str, Any]) -> None:
    for subject in corpus.values():
        assert_same(subject.plan, subject.renderer, fields)
