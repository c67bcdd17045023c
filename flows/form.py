"""The send-campaign form: what the Prefect UI draws, and the run options it makes.

`RunForm` is the form; `send_campaign`'s parameters are generated from it
(`form_parameters`), so the UI, the API and Python callers see the same fields, defaults
and help. `RunForm` and its `advanced` group are made from the run options model
(edition/run/options.py) with `create_model`: each run option is a field with the
option's type and help, in the form's words where the UI needs them (empty means the
campaign's or the default: the UI needs a value it can show), `dry_run` plus
`confirm_send` instead of `send`, the rarely changed ones in `advanced`; a run option
added to RunOptions appears under `advanced` by itself, and the few the form leaves out
are listed with the reason (`NOT_IN_FORM`). `RunForm.options()` turns it into
`RunOptions` by name; `RunOptions.build` is the one check of the values. The form adds
only what a form needs: the campaign by its name, paths relative to the content root,
the confinement of a served run (edition/run/roots.py), the two switches to send, and the
task runner's settings.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import operator
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    WithJsonSchema,
    create_model,
    field_validator,
)

from edition.databases import held
from edition.errors import UsageError
from edition.run.options import RunOptions, parse_run_date
from edition.run.roots import locate
from edition.run.workers import plan_for, unshared_stores

Format = Literal["html", "text", "eml", "pdf"]
Runner = Literal["thread", "process", "dask"]

# The form draws a field from its JSON schema: `str | None` would be "Property is type
# None" until a type is picked, so the schema says string (integer, array) with a default
# the form can show, while Python callers may still pass None.
Text = Annotated[str | None, WithJsonSchema({"type": "string"})]
Formats = Annotated[list[Format] | None, WithJsonSchema(
    {"type": "array", "items": {"type": "string", "enum": list(get_args(Format))},
     "uniqueItems": True})]
# Dates are plain strings in the form: with `format: date` the UI's own check refuses the
# empty default ("'' is not a 'date-time'") and Submit does nothing; the pattern allows
# empty or the ISO form, and RunOptions says what is wrong with anything else.
DATE_PATTERN = r"^(\d{4}-\d{2}-\d{2})?$"
TIME_PATTERN = (r"^(\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
                r"(Z|[+-]\d{2}:?\d{2})?)?)?$")
AsOf = Annotated[dt.date | str | None, WithJsonSchema({"type": "string",
                                                       "pattern": DATE_PATTERN})]
# schema only: RunOptions refuses a negative limit, in its own words
Limit = Annotated[int | None, WithJsonSchema({"type": "integer", "minimum": 0})]
# Plain text, not format date-time: the form fills in the whole `advanced` default, and
# the server's check of the form refuses "" as a date-time.
Started = Annotated[dt.datetime | Literal[""], WithJsonSchema(
    {"type": "string", "pattern": TIME_PATTERN})]

# A flow's batches are bigger than edition run's 500: each is a task run whose state
# changes and logs go through the API (~0.1 s here). 20,000 customers through the thread
# runner took 9.1 s of flow run at 500 a batch, 8.3 s at 1,000, 7.1 s at 2,000.
FLOW_BATCH = 2000
SOURCES = ("a CSV, JSONL or Parquet file, or a `postgresql://` URL "
           "(`postgresql://host/db?table=customers`)")


# Run options the form does not show, and why (every other option is a form field: one
# added to RunOptions appears under `advanced` with its own type, default and help).
NOT_IN_FORM = {
    "send": "the form's two switches instead: dry_run off AND confirm_send on",
    "suppression": "more suppression files of the machine that runs the flow: the "
                   "campaign's own lists apply",
    "encoding": "the command line's --encoding; a customer file named in the form is "
                "UTF-8 or declares its encoding in the campaign",
    "force": "sending past the complaint-rate stop is decided at the command line "
             "(edition run --send --force), not from a form anyone with UI access can fill",
}


def option(name: str, default: Any, annotation: Any = None, description: str | None = None,
           **constraints: Any) -> tuple[Any, Any]:
    """The form field of run option `name`: its type in the form (the option's own unless
    the UI needs another), the form's default (a value the UI can show; empty means
    unset), the option's help (edition/run/options.py) unless the form says more."""
    field = RunOptions.model_fields[name]
    return (annotation or field.annotation,
            Field(default, description=description or field.description, **constraints))


def derived(name: str, options: type[RunOptions] = RunOptions) -> tuple[Any, Any]:
    """A run option no form field below names, as RunOptions declares it; an optional
    one is drawn as its type (the UI cannot draw "null"), empty meaning unset."""
    field = options.model_fields[name]
    annotation = field.annotation
    kinds = tuple(kind for kind in get_args(annotation) if kind is not type(None))
    if kinds and len(kinds) < len(get_args(annotation)):   # X | None
        drawn = TypeAdapter(functools.reduce(operator.or_, kinds)).json_schema()
        annotation = Annotated[annotation, WithJsonSchema(drawn)]
    return annotation, Field(field.get_default(call_default_factory=True),
                             description=field.description)


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("dask_address", "out", "run_id", "started", mode="before",
                     check_fields=False)
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return "" if value is None else value  # None, as before the form had defaults


def settings_fields(options: type[RunOptions] = RunOptions) -> dict[str, tuple[Any, Any]]:
    """`advanced`'s fields, in the form's order: the form's own and the rarely changed
    run options, then every run option the form does not otherwise name."""
    fields: dict[str, tuple[Any, Any]] = {
        "batch_size": option("batch_size", FLOW_BATCH, int, (
            "Customers per render-batch task (thousands: every task run is a few round "
            "trips to the Prefect API)."), ge=1),
        "task_runner": (Runner, Field("thread", description=(
            "Where batches render: threads of the flow's process, a process pool, or "
            "Dask."))),
        "workers": (int, Field(0, ge=0, description=(
            "Threads, processes or Dask workers; 0 means one per CPU."))),
        "dask_address": (str, Field("", description=(
            "An existing Dask scheduler (tcp://host:8786); empty starts a local cluster. "
            "Only with task_runner dask."))),
        "out": option("out", "", str, (
            "Output folder; empty means `out/CAMPAIGN/RUN_ID` under the content root.")),
        "run_id": option("run_id", "", str),
        "started": option("started", "", Started),
        "resend_unknown": option("resend_unknown", False),
        "overwrite": (bool, Field(False, description=(
            "Replace an earlier run's output when `out` names a folder that holds one."))),
        "new_mailing": option("new_mailing", False),
        "review_before_send": (bool, Field(True, description=(
            "When sending: render as a dry run first, then wait for an approver to resume "
            "the run from the UI; only then send exactly what was rendered. Campaigns with "
            "`approval: required` always wait."))),
        "approval_timeout_hours": (float, Field(24.0, gt=0, description=(
            "How long a run waits for its approver; unanswered, it ends Cancelled and "
            "nothing is sent."))),
    }
    named = set(fields) | set(MAIN) | set(NOT_IN_FORM)
    return fields | {name: derived(name, options) for name in options.model_fields
                     if name not in named}


MAIN = ("campaign", "customers", "formats", "as_of", "limit", "to", "mailing")


def form_fields(settings: type[BaseModel]) -> dict[str, tuple[Any, Any]]:
    """The form's top fields, in its order (see the module docstring)."""
    return {
        "campaign": (str, ...),
        "customers": option("customers", "", Text, (
            f"Customers instead of the campaign's: {SOURCES}; a relative path is looked up "
            f"from the content root, then from the working directory. Empty means the "
            f"campaign's.")),
        "formats": option("formats", (), Formats),
        "as_of": option("as_of", "", AsOf),
        "limit": option("limit", 0, Limit),
        "dry_run": (bool, Field(True, description=(
            "On (the default) nothing leaves the machine: files are written only."))),
        "confirm_send": (bool, Field(False, description=(
            "Must also be on to really send (with dry_run off)."))),
        "to": option("to", "", Text),
        "mailing": option("mailing", "", Text),
        "advanced": (settings, Field(settings(), description=(
            "Batch size, task runner (thread, process, Dask), output folder, run id."))),
    }


class _Form(BaseModel):
    """send-campaign's parameters (see the module docstring); field order is the form's."""

    model_config = ConfigDict(extra="forbid")
    run_options: ClassVar[type[RunOptions]] = RunOptions   # the model the form is made from

    def options(self, *, scheduled: str | None = None) -> RunOptions:
        """The run's options, or every problem in one UsageError (nothing read or written).

        `scheduled` is a scheduled run's mailing (its date), used when none is named."""
        settings = self.advanced
        path, customers, out, problems = locate(self.campaign, self.customers, settings.out,
                                                to=self.to or None,
                                                dask_address=settings.dask_address or None)
        if settings.dask_address and settings.task_runner != "dask":
            problems.append("dask_address needs task_runner dask")
        if not self.dry_run and not self.confirm_send:
            problems.append("sending needs two switches: dry_run off AND confirm_send on "
                            "(nothing was rendered or sent)")
        values = {name: getattr(self, name) for name in shared(type(self), self.run_options)}
        values |= {name: getattr(self.advanced, name)
                   for name in shared(type(self.advanced), self.run_options)}
        values = {name: value for name, value in values.items() if not _empty(name, value)}
        values.setdefault("mailing", scheduled)
        try:
            options = self.run_options.build(campaign=str(path), customers=customers,
                                             out=out, send=not self.dry_run, **values)
        except UsageError as exc:
            problems.append(exc.message)
        if problems:
            raise UsageError("; ".join(problems))
        options = options.resolved()
        plan_for(options)  # campaign, catalog and templates: a ContentError names file and line
        problems = dask_problems(options, self.advanced.task_runner,
                                 self.advanced.dask_address or None)
        if problems:
            raise UsageError("; ".join(problems))
        return options

    @classmethod
    def of(cls, options: RunOptions, settings: dict[str, Any]) -> _Form:
        """The form that makes these options (`edition run --via-prefect`); a customers
        URL goes without its password: Prefect stores a flow run's parameters (this
        process keeps it to connect with)."""
        given = {k: v for k, v in options.model_dump().items() if v is not None}
        group = cls.model_fields["advanced"].annotation
        assert group is not None
        advanced = {name: given[name] for name in shared(group, cls.run_options)
                    if name in given}
        return cls(campaign=options.campaign,
                   customers=held(options.customers) if options.customers else "",
                   dry_run=not options.send, confirm_send=options.send,
                   **{name: given[name] for name in shared(cls, cls.run_options) if name in given},
                   advanced=group(**{"out": options.out or "", **advanced, **settings}))


def form_models(options: type[RunOptions] = RunOptions) -> tuple[type[_Form], type[_Settings]]:
    """(the form, its `advanced` group) made from the run options model's fields."""
    settings = create_model("RunSettings", __base__=_Settings, __module__=__name__,
                            __doc__="Options most runs leave alone.",
                            **settings_fields(options))  # type: ignore[call-overload]
    form = create_model("RunForm", __base__=_Form, __module__=__name__,
                        __doc__=_Form.__doc__, **form_fields(settings))  # type: ignore[call-overload]
    form.run_options = options
    return form, settings


RunForm, RunSettings = form_models()


def shared(form: type[BaseModel], options: type[RunOptions] = RunOptions) -> tuple[str, ...]:
    """The run options a form model sets by name, in its order (the campaign, customers
    and out are resolved against the content root first); "empty" (None, "", [], a limit
    of 0) is unset."""
    return tuple(name for name in form.model_fields
                 if name in options.model_fields and name not in RESOLVED)


RESOLVED = ("campaign", "customers", "out")


def _empty(name: str, value: Any) -> bool:
    return value is None or value == "" or (name == "limit" and value == 0) or (
        name == "formats" and not value)


def check_parameters(campaign: str, **parameters: Any) -> RunOptions:
    """The options send-campaign's parameters make, or every problem in one UsageError
    (None for a parameter means its default, as older callers send it)."""
    return RunForm(campaign=campaign, **{k: v for k, v in parameters.items()
                                         if v is not None}).options()


def run_date(as_of: dt.date | str | None) -> tuple[dt.date | None, list[str]]:
    """The form's `as_of` ("" or YYYY-MM-DD; a date from Python): (date or None, problems)."""
    try:
        return parse_run_date(as_of), []
    except ValueError as exc:
        return None, [str(exc)]


def dask_problems(options: RunOptions, runner: str, dask_address: str | None) -> list[str]:
    """What stops a run on a Dask scheduler's workers before any work, in words.

    They may run on other machines: they cannot reach Prefect's temporary server (no
    PREFECT_API_URL), and a send cannot share a SQLite ledger with them (finding its
    claims in a file of their own, they would send everyone again on the next send).
    A local cluster (no address) runs on this machine: it may use both.
    """
    if runner != "dask" or not dask_address:
        return []
    from prefect.settings import PREFECT_API_URL

    problems = []
    if not PREFECT_API_URL.value():
        problems.append(
            f"the Dask scheduler {dask_address}'s workers report their task runs to the "
            f"flow's Prefect server, and without PREFECT_API_URL that is Prefect's "
            f"temporary server on this machine's loopback, which they cannot reach: start "
            f"a server (prefect server start) and set PREFECT_API_URL, or leave the Dask "
            f"address empty to run on a local cluster")
    if options.send:
        problems += unshared_stores(plan_for(options).campaign,
                                    f"the Dask scheduler {dask_address}")
    return problems


F = TypeVar("F", bound=Callable[..., Any])


def form_parameters(form: type[BaseModel]) -> Callable[[F], F]:
    """Give a flow function the form's fields as its parameters, in the form's order,
    with their types, defaults and help (Prefect draws the UI's form from them)."""

    def give(fn: F) -> F:
        parameters = []
        for name, field in form.model_fields.items():
            default: Any = inspect.Parameter.empty
            if not field.is_required():
                default = Field(field.default, description=field.description)
            parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                                default=default,
                                                annotation=field.rebuild_annotation()))
        fn.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            parameters, return_annotation=inspect.signature(fn).return_annotation)
        return fn

    return give


__all__ = ["DATE_PATTERN", "FLOW_BATCH", "TIME_PATTERN", "RunForm", "RunSettings", "Runner",
           "check_parameters", "dask_problems", "form_parameters", "run_date"]
