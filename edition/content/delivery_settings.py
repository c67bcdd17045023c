"""A campaign's `delivery:` block: where its editions go, the send ledger, DKIM, and the
target's own options, typed by the target's plugin.

    delivery:
      to: smtp://mail.acme.example:587     # local, s3://…, smtp://…, ses, https://… (webhook)
      ledger: postgresql://edition@db/edition    # optional: the send ledger
      dkim: {domain: acme.example, selector: s2026, key_file: keys/dkim.pem}
      in_flight: 16                         # optional: messages sent at once per worker
      starttls: true                        # …and the target's options
      rate: 20

`to`, `ledger` and `dkim` are the engine's; every other key is an option of the target
`to` names, checked against that target's options model (content/plugins.py: the
plugin declares it). So `delivery` is a union over the installed targets, told apart by
the scheme of `to`, and `DeliverySettings.options` is the chosen target's own model.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    SerializeAsAny,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from edition.content.campaign_values import ENV_NAME, HOSTNAME, Strict
from edition.content.errors_at_lines import Loc, fail, fail_all
from edition.content.plugins import (
    ENGINE_KEYS,
    TargetOptions,
    option_problems,
    scheme_of,
    target_plugin,
    target_problem,
)
from edition.databases import masked

MAX_IN_FLIGHT = 256


class Dkim(Strict):
    """`delivery: {dkim: {domain: acme.example, selector: s2026, key_file: keys/dkim.pem}}`.

    The key is the private RSA key in PEM, from a file (relative to the content root) or
    from an environment variable (`key_env: EDITION_DKIM_KEY`); the campaign names where
    it is, never the key itself.
    """

    domain: str
    selector: str
    key_file: str | None = None
    key_env: str | None = None

    @field_validator("domain", mode="before")
    @classmethod
    def _domain(cls, value: object) -> object:
        if not isinstance(value, str) or not HOSTNAME.match(value) or "." not in value:
            raise fail(f"dkim.domain {value!r} must be a domain name, e.g. acme.example",
                       says_where=True)
        return value.lower()

    @field_validator("selector", mode="before")
    @classmethod
    def _selector(cls, value: object) -> object:
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) \
            else None
        if text is None or not HOSTNAME.match(text):
            raise fail(f"dkim.selector {value!r} must be letters, digits, '-' and '.' "
                       f"(the name before ._domainkey in DNS)", says_where=True)
        return text

    @field_validator("key_env", mode="before")
    @classmethod
    def _env(cls, value: object) -> object:
        if value is not None and (not isinstance(value, str) or not ENV_NAME.match(value)):
            raise fail(f"dkim.key_env {value!r} must be the name of an environment variable",
                       says_where=True)
        return value

    @model_validator(mode="after")
    def _one_key(self) -> Dkim:
        if (self.key_file is None) == (self.key_env is None):
            raise fail("dkim needs exactly one of key_file (a PEM file) or key_env (an "
                       "environment variable holding the PEM key)", says_where=True)
        return self


class DeliverySettings(Strict):
    """`delivery:`, checked: the engine's keys, and the target's options as its model."""

    to: str = "local"
    ledger: str | None = None     # a file or postgresql:// URL (default: see send/delivery.py)
    dkim: Dkim | None = None      # SMTP only; SES signs itself
    # messages in flight per worker: above 1 their transport waits overlap (pooled SMTP
    # connections, SES's HTTP pool), and a crash can leave up to that many `unknown`
    in_flight: int = 1
    options: SerializeAsAny[TargetOptions] = TargetOptions()

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, value: object) -> object:
        if not isinstance(value, str):
            raise fail("delivery.to must be text, e.g. local or smtp://host:port",
                       says_where=True)
        problem = target_problem(value)
        if problem:   # never the password of a target that holds one
            raise fail(f"delivery.to {masked(value)!r} {problem}", says_where=True)
        return value.strip()

    @field_validator("ledger", mode="before")
    @classmethod
    def _ledger(cls, value: object) -> object:
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise fail("delivery.ledger must be a file path or a postgresql:// URL",
                       says_where=True)
        return value

    @field_validator("in_flight", mode="before")
    @classmethod
    def _in_flight(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_IN_FLIGHT:
            raise fail(f"delivery.in_flight must be a whole number from 1 to {MAX_IN_FLIGHT} "
                       "(messages sent at once per worker)", says_where=True)
        return value

    @field_validator("dkim", mode="before")
    @classmethod
    def _dkim(cls, value: object) -> object:
        if value is not None and not isinstance(value, dict):
            raise fail("delivery.dkim must be a mapping: {domain, selector, key_file | "
                       "key_env}", says_where=True)
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _with_target_options(cls, value: object, handler: ValidatorFunctionWrapHandler
                             ) -> DeliverySettings:
        """The engine's keys by this model, every other key by the target's own model;
        every problem of both at once."""
        if isinstance(value, DeliverySettings):
            return value
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise fail("delivery must be a mapping like {to: local}")
        given = {k: v for k, v in value.items() if k not in ENGINE_KEYS and v is not None}
        errors: list[tuple[Loc, PydanticCustomError | ErrorDetails]] = []
        settings: DeliverySettings | None = None
        try:
            settings = handler({k: v for k, v in value.items() if k in ENGINE_KEYS})
        except ValidationError as exc:
            errors += [((), error) for error in exc.errors()]
        to = value.get("to", "local")
        plugin = target_plugin(to) if isinstance(to, str) else None
        if plugin is not None:
            for option, problem in option_problems(plugin.options_model, given,
                                                   also=ENGINE_KEYS, kind=scheme_of(to)):
                errors.append(((), fail(f"delivery: {problem}", at=option, says_where=True)))
        fail_all(errors, value)
        assert settings is not None and plugin is not None
        return settings.model_copy(
            update={"options": plugin.options_model.model_validate(given)})

    def given_options(self) -> dict[str, Any]:
        """The target's options as the campaign wrote them (for another target named
        with `--to`, which checks them against its own model)."""
        return self.options.model_dump(exclude_unset=True)
