"""The send-campaign form is made from the run options model: an option added there is a
form field (with its type, default and help) without a line changed in flows/."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field

from edition.errors import UsageError
from edition.run.options import RunOptions


def null_typed(schema: Any) -> list[str]:
    """Properties the Prefect UI would draw as "type None" (it cannot fill them)."""
    found = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            if isinstance(value, dict) and value.get("type") == "null":
                found.append(key)
            found += null_typed(value)
    elif isinstance(schema, list):
        for value in schema:
            found += null_typed(value)
    return found


class WiderOptions(RunOptions):
    """RunOptions with two options a later issue might add."""

    priority: int | None = Field(default=None, description="Send before other campaigns.")
    window: str = Field(default="any", description="When mail may leave: any or office.")

    given: ClassVar[dict[str, Any]] = {}   # what the form gave the check, for the test

    @classmethod
    def build(cls, **values: Any) -> RunOptions:
        cls.given.update(values)
        if values.get("window") not in (None, "any", "office"):
            raise UsageError(f"window {values['window']!r}: any or office")
        return RunOptions.build(**{k: v for k, v in values.items()
                                   if k not in {"priority", "window"}})


def test_every_run_option_is_a_form_field_or_left_out_with_a_reason() -> None:
    from flows.form import NOT_IN_FORM, RunForm, RunSettings

    fields = set(RunForm.model_fields) | set(RunSettings.model_fields)
    for name in RunOptions.model_fields:
        assert (name in fields) != (name in NOT_IN_FORM), name
    assert set(NOT_IN_FORM) <= set(RunOptions.model_fields)
    assert all(len(reason) > 20 for reason in NOT_IN_FORM.values())
    # the option's help is the field's, declared once in edition/run/options.py
    for name in ("formats", "as_of", "limit", "to", "mailing"):
        assert RunForm.model_fields[name].description == RunOptions.model_fields[name].description
    for name in ("run_id", "started", "resend_unknown", "new_mailing"):
        assert (RunSettings.model_fields[name].description
                == RunOptions.model_fields[name].description), name


def test_an_option_added_to_run_options_appears_in_the_form() -> None:
    from prefect.utilities.callables import parameter_schema

    from flows.form import RunForm, form_models, form_parameters

    form, settings = form_models(WiderOptions)
    assert set(settings.model_fields) - set(RunForm.model_fields["advanced"].annotation
                                            .model_fields) == {"priority", "window"}

    @form_parameters(form)
    def flow_like(**parameters: Any) -> None:
        """A flow with the wider form."""

    schema = parameter_schema(flow_like).model_dump()
    text = str(schema)
    assert "Send before other campaigns." in text and "When mail may leave" in text
    assert null_typed(schema) == []   # priority (int | None) is drawn as an integer
    advanced = form.model_fields["advanced"].default
    assert (advanced.priority, advanced.window) == (None, "any")


def test_an_added_option_travels_from_the_form_to_the_options_check(sample_root: Path) -> None:
    from flows.form import form_models

    form, settings = form_models(WiderOptions)
    campaign = str(sample_root / "campaigns" / "weekly-newsletter.yaml")
    filled = form(campaign=campaign, advanced=settings(priority=3, window="office"))
    filled.options()
    assert (WiderOptions.given["priority"], WiderOptions.given["window"]) == (3, "office")
    # the options model is the one check: the form does not check the value itself
    wrong = form(campaign=campaign, advanced=settings(window="never"))
    with pytest.raises(UsageError, match="window 'never': any or office"):
        wrong.options()
