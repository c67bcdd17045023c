"""An experiment's "test then winner" mode (issue 21, part 2): the test cells are sent
first and the rest wait ("waiting for the experiment's verdict"); a run of the same
mailing after the wait reads the verdict (the report's decision rule, over clicks in
the store) and sends the winner's variant to the rest, exactly once per customer through
the ledger. Runs of the send-campaign flow in Prefect's test harness at set clocks (the
scheduled follow-up runs), an aiosmtpd sink, then the real CLI."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import read_manifest
from fixtures_delivery import smtp_sink
from test_experiments import EXPERIMENT, OFFERS, PAGE, campaign, ids

from edition.audience.experiments import HOLDOUT, REST, WAITING, Rest, steer, variant_of
from edition.content.experiment import Experiment
from edition.store.clicks import ClickStore

THEN_WINNER = EXPERIMENT | {"split": {"a": 50, "b": 50}, "mode": "test_then_winner",
                            "test_share": 0.4, "wait": "24h",
                            "decide": {"min_per_variant": 5, "p_best": 0.95}}


def _flow_run(root: Path, out: str, started: str, port: int) -> dict[str, dict[str, Any]]:
    from flows.campaign import RunSettings, send_campaign

    state = send_campaign(campaign=str(root / "campaigns" / "news.yaml"), dry_run=False,
                          confirm_send=True, to=f"smtp://127.0.0.1:{port}", mailing="m1",
                          return_state=True,
                          advanced=RunSettings(out=str(root / "out" / out), started=started,
                                               review_before_send=False))
    assert state.is_completed(), state
    return {r["customer_id"]: r for r in read_manifest(root / "out" / out)}


def _clicks(root: Path, rows: dict[str, dict[str, Any]], out: str, *, a: int) -> None:
    """Every variant-b customer clicks their offer; only `a` of variant a do."""
    from edition.render.tracking import secrets_from_env, verify

    secret = secrets_from_env()
    done: Counter[str] = Counter()
    with ClickStore(root / "out" / "suppression.sqlite") as store:
        for row in rows.values():
            variant = (row.get("experiment") or {}).get("variant")
            if row["status"] != "sent" or variant not in ("a", "b"):
                continue
            if variant == "a" and done["a"] >= a:
                continue
            page = (root / "out" / out / row["files"]["html"]).read_text(encoding="utf-8")
            token = page.split("https://go.acme.example/c/", 1)[1].split('"', 1)[0]
            c = verify(token, secret)
            store.record(campaign=c.campaign, mailing=c.mailing, version=c.version,
                         module=c.module, url=c.url, segments=c.segments,
                         customer_id=c.customer_id,
                         client=row["customer_id"].encode().hex()[:32])
            done[variant] += 1


def test_test_cells_first_then_the_winner_to_the_rest_exactly_once(
        prefect_harness: None, content_tree: Callable[..., Path], cli: Callable) -> None:
    people = [{"id": c, "email": f"p{i}@example.com", "first_name": "Al"}
              for i, c in enumerate(ids(200))]
    email = {p["id"]: p["email"] for p in people}
    root = content_tree(campaigns={"news.yaml": campaign(experiment=THEN_WINNER)},
                        templates={"news.html.j2": PAGE}, offers=OFFERS,
                        customers={"customers.csv": people})
    with smtp_sink() as (port, sink):
        # day 1, 10:00: the test cells only
        first = _flow_run(root, "run1", "2026-12-01T10:00:00+00:00", port)
        cells = Counter((r.get("experiment") or {}).get("variant") for r in first.values())
        assert cells["a"] > 20 and cells["b"] > 20 and cells[WAITING] > 90, cells
        test = {c for c, r in first.items() if r["experiment"]["variant"] in ("a", "b")}
        rest = {c for c, r in first.items() if r["experiment"]["variant"] == WAITING}
        assert test | rest == set(email)
        for cid in rest:
            row = first[cid]
            assert row["status"] == "excluded" and row["reason_code"] == "experiment_waiting"
            assert row["reason"].startswith(
                "waiting for the experiment's verdict (offer-test"), row["reason"]
            assert row["experiment"]["cell"] == REST
        assert {first[c]["status"] for c in test} == {"sent"}
        assert sorted(sink.received) == sorted(email[c] for c in test)

        _clicks(root, first, "run1", a=2)   # b is clearly better

        # day 1, 12:00: the wait (24 h) is not over: the rest still waits, nobody twice
        second = _flow_run(root, "run2", "2026-12-01T12:00:00+00:00", port)
        assert {second[c]["status"] for c in rest} == {"excluded"}
        assert all("until 2026-12-02T10:00" in second[c]["reason"] for c in rest)
        assert {second[c]["reason_code"] for c in test} == {"already_sent"}
        assert len(sink.messages) == len(test)

        # day 2, 11:00: the verdict names b: the rest gets b, once
        third = _flow_run(root, "run3", "2026-12-02T11:00:00+00:00", port)
        for cid in rest:
            row = third[cid]
            assert row["status"] == "sent" and not row.get("reason_code"), row
            assert row["experiment"] == {"name": "offer-test", "variant": "b", "cell": REST}
            assert row["modules"]["offer"] == ["o-generic"]
        assert {third[c]["reason_code"] for c in test} == {"already_sent"}
        assert dict(sink.received) == {e: 1 for e in email.values()}

        # the real CLI, today, the same mailing: nobody gets a second message
        code, out, err = cli("run", "campaigns/news.yaml", "--send", "--yes", "--mailing",
                             "m1", "--out", "out/run4", "--to", f"smtp://127.0.0.1:{port}",
                             cwd=root)
        assert code == 0, out + err
        assert {r["reason_code"] for r in read_manifest(root / "out" / "run4")} == {
            "already_sent"}
        assert dict(sink.received) == {e: 1 for e in email.values()}

    # the report counts the test cells only: the rest got b because b won
    code, out, err = cli("experiment", "report", "campaigns/news.yaml", "--json", cwd=root)
    assert code == 0, out + err
    import json
    arms = {v["variant"]: v for v in json.loads(out)["variants"]}
    assert arms["a"]["sends"] + arms["b"]["sends"] == len(test)


def test_the_rest_in_pure_logic() -> None:
    experiment = Experiment.model_validate(THEN_WINNER | {"default": "a"})
    assignment = Counter(variant_of("news", experiment, c) for c in ids(20_000))
    assert abs(assignment[REST] / 20_000 - 0.6) <= 0.02, assignment
    assert abs(assignment["a"] / 20_000 - 0.2) <= 0.02, assignment
    assert HOLDOUT not in assignment
    someone = next(c for c in ids(500) if variant_of("news", experiment, c) == REST)
    waiting = steer("news", experiment, someone, Rest(None, "until T"))
    assert waiting is not None and waiting.waiting and waiting.note == "until T"
    won = steer("news", experiment, someone, Rest("b", "winner b"))
    assert won is not None and (won.variant, won.module, won.cell) == ("b", "o-generic", REST)


@pytest.mark.parametrize("change, words", [
    ({"mode": "bandit"}, "experiment.mode"),
    ({"test_share": 0}, "experiment.test_share"),
    ({"wait": "tomorrow"}, "experiment.wait"),
    ({"default": "c"}, "experiment.default"),
])
def test_a_wrong_test_then_winner_is_refused(change: dict[str, Any], words: str) -> None:
    with pytest.raises(Exception) as caught:
        Experiment.model_validate(THEN_WINNER | change)
    assert words in str(caught.value)


def test_no_winner_keeps_the_rest_waiting_until_a_default_is_declared(
        content_tree: Callable[..., Path], cli: Callable) -> None:
    """The real CLI, a wait of 0 minutes, no clicks: the rule says "keep testing"; the
    rest keep waiting (the reason says so) until the campaign declares a default."""
    import yaml

    people = [{"id": c, "email": f"p{i}@example.com"} for i, c in enumerate(ids(60))]
    email = {p["id"]: p["email"] for p in people}
    experiment = THEN_WINNER | {"wait": "0m", "decide": {"min_per_variant": 1000}}
    root = content_tree(campaigns={"news.yaml": campaign(experiment=experiment)},
                        templates={"news.html.j2": PAGE}, offers=OFFERS,
                        customers={"customers.csv": people})

    def send(out: str, port: int) -> dict[str, dict[str, Any]]:
        code, stdout, stderr = cli("run", "campaigns/news.yaml", "--send", "--yes",
                                   "--mailing", "m1", "--out", f"out/{out}", "--to",
                                   f"smtp://127.0.0.1:{port}", cwd=root)
        assert code == 0, stdout + stderr
        return {r["customer_id"]: r for r in read_manifest(root / "out" / out)}

    with smtp_sink() as (port, sink):
        first = send("one", port)
        test = {c for c, r in first.items() if r["status"] == "sent"}
        rest = set(email) - test
        assert test and rest
        assert all("no test cell sent yet" in first[c]["reason"] for c in rest)
        second = send("two", port)
        assert {second[c]["status"] for c in rest} == {"excluded"}
        assert all("verdict: keep testing, no default variant" in second[c]["reason"]
                   for c in rest), second
        assert sorted(sink.received) == sorted(email[c] for c in test)

        path = root / "campaigns" / "news.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["experiment"]["default"] = "a"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        third = send("three", port)
        for cid in rest:
            assert third[cid]["status"] == "sent", third[cid]
            assert third[cid]["experiment"] == {"name": "offer-test", "variant": "a",
                                                "cell": REST}
            assert third[cid]["modules"]["offer"] == ["o-vip"]
        assert dict(sink.received) == {e: 1 for e in email.values()}
