"""Segments: named rules over a customer's fields, compiled once, evaluated per customer.

Pure engine code: no files, no server, no Prefect.
"""

from __future__ import annotations

import pytest

from edition.content.environment import EditionEnvironment
from edition.content.segments import Segmenter, compile_segment
from edition.errors import ContentError

ENV = EditionEnvironment()


def segmenter(**rules: str) -> Segmenter:
    return Segmenter([compile_segment(ENV, name, rule, "campaigns/x.yaml", n)
                      for n, (name, rule) in enumerate(rules.items(), start=7)])


def test_a_customer_is_in_every_segment_whose_rule_holds_in_campaign_order() -> None:
    rules = segmenter(mvc="lifetime_value >= 5000", senior="age >= 65",
                      expecting="life_stage == 'expecting'")
    members, missing = rules.assign({"lifetime_value": 9000, "age": 70,
                                     "life_stage": "retired"})
    assert members == ("mvc", "senior") and missing == {}


def test_rules_see_fields_directly_and_as_customer_attributes() -> None:
    rules = segmenter(a="age > 30", b="customer.age > 30", c="'garden' in interests")
    assert rules.assign({"age": 31, "interests": ["garden"]})[0] == ("a", "b", "c")


def test_a_missing_field_makes_the_rule_false_and_is_named() -> None:
    rules = segmenter(mvc="lifetime_value >= 5000", senior="age >= 65")
    members, missing = rules.assign({"age": 70})
    assert members == ("senior",)
    assert missing == {"mvc": "lifetime_value"}


def test_a_rule_that_fails_on_a_value_is_false_with_the_error() -> None:
    rules = segmenter(rich="lifetime_value >= 5000")
    members, missing = rules.assign({"lifetime_value": "lots"})
    assert members == () and missing["rich"].startswith("error:")


def test_no_segments_means_no_members() -> None:
    assert Segmenter([]).assign({"age": 1}) == ((), {})


@pytest.mark.parametrize(("rule", "words"), [
    ("age >= ", "bad rule"),
    ("x.__class__", "refused by the sandbox"),
    ("x['__globals__']", "refused by the sandbox"),
])
def test_bad_rules_are_content_errors_with_the_campaign_line(rule: str, words: str) -> None:
    with pytest.raises(ContentError) as caught:
        compile_segment(ENV, "broken", rule, "campaigns/x.yaml", 12)
    assert (caught.value.file, caught.value.line) == ("campaigns/x.yaml", 12)
    assert words in caught.value.message and "broken" in caught.value.message


def test_a_rule_must_be_an_expression_string() -> None:
    with pytest.raises(ContentError, match="expression string"):
        compile_segment(ENV, "flag", True, "campaigns/x.yaml", 3)
