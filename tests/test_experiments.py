"""Experiments: assignment by hash (stable under a reordered and grown customer file,
shares within ±2 % at 20,000 customers), the real CLI's manifest (variant per row,
holdout `excluded`), the fixed decision rule on 200 seeded simulations each way, and
`edition experiment report --json` over a real send and recorded clicks.
"""

from __future__ import annotations

import html
import json
import random
from collections import Counter
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import read_manifest, write_customers_file

from edition.audience.experiments import HOLDOUT, variant_of
from edition.content.experiment import Decide, Experiment
from edition.feedback.experiments import Arm, decide
from edition.store.clicks import ClickStore

AS_OF = "2026-11-02"
EXPERIMENT = {"name": "offer-test", "slot": "offer",
              "variants": {"a": "o-vip", "b": "o-generic"}, "split": {"a": 45, "b": 45},
              "metric": "clicks", "decide": {"min_per_variant": 5, "p_best": 0.95}}
PAGE = """<html><body><p>Hi {{ customer.first_name | default('there') }}</p>
{% for o in offer %}<div class="offer">{{ o.id }}: {{ o.html }}</div>{% endfor %}
<p><a href="{{ customer.unsubscribe_url }}">Unsubscribe</a></p></body></html>
"""
OFFERS = {
    "o-vip.md": {"title": "VIP", "priority": 1, "body": "[Shop VIP](https://shop.example/vip)\n"},
    "o-generic.md": {"title": "Generic", "priority": 1, "body": "[Shop](https://shop.example/all)\n"},
    "o-house.md": {"title": "House", "priority": 0, "body": "[House](https://shop.example/house)\n"},
}


def ids(n: int, start: int = 0) -> list[str]:
    # ids of every shape a CRM exports: numbers, huge numbers, e-mail-like, unicode
    shapes = ["{}", "CUST-{:08d}", "9{:030d}", "user{}@example.com", "Zoë-{}"]
    return [shapes[i % len(shapes)].format(i) for i in range(start, start + n)]


def test_assignment_is_stable_under_a_reordered_and_grown_file_and_keeps_its_shares() -> None:
    experiment = Experiment.model_validate(EXPERIMENT)
    first = {c: variant_of("news", experiment, c) for c in ids(20_000)}
    shuffled = ids(30_000)
    random.Random(3).shuffle(shuffled)
    again = {c: variant_of("news", experiment, c) for c in shuffled}
    assert all(again[c] == v for c, v in first.items())
    shares = Counter(first.values())
    for key, expected in (("a", 0.45), ("b", 0.45), (HOLDOUT, 0.10)):
        assert abs(shares[key] / 20_000 - expected) <= 0.02, shares
    # another experiment name reshuffles everyone (independent assignments)
    other = Experiment.model_validate(EXPERIMENT | {"name": "offer-test-2"})
    moved = sum(variant_of("news", other, c) != v for c, v in first.items())
    assert 0.4 < moved / 20_000 < 0.7


def simulate(rates: tuple[float, float], n: int, seed: int) -> str:
    rng = random.Random(seed)
    arms = [Arm(k, n, sum(rng.random() < r for _ in range(n))) for k, r in zip("ab", rates,
                                                                              strict=True)]
    verdict = decide(arms, Decide(min_per_variant=n, p_best=0.95))
    return verdict.winner if verdict.verdict == "winner" else verdict.verdict


def test_the_rule_declares_the_better_variant_and_none_when_equal() -> None:
    better = Counter(simulate((0.05, 0.08), 3000, seed) for seed in range(200))
    assert better["b"] >= 190 and better["a"] == 0, better
    equal = Counter(simulate((0.06, 0.06), 3000, 1000 + seed) for seed in range(200))
    assert equal["no difference"] >= 190, equal
    # below the minimum the rule never decides
    arms = [Arm("a", 10, 0), Arm("b", 10_000, 900)]
    assert decide(arms, Decide(min_per_variant=100, p_best=0.95)).verdict == "keep testing"


def campaign(**extra: Any) -> dict[str, Any]:
    return {"name": "news", "template": "news.html.j2", "subject": "News",
            "sender": "Acme <news@acme.example>", "customers": "data/customers.csv",
            "slots": {"offer": {"kind": "offer", "count": 1}},
            "formats": ["html", "eml"], "unsubscribe_url": "https://acme.example/u",
            "tracking": {"base_url": "https://go.acme.example", "level": "customer"},
            "experiment": EXPERIMENT, **extra}


def test_a_run_records_variants_and_excludes_the_holdout(
        content_tree: Callable[..., Path], cli: Callable[..., Any]) -> None:
    people = [{"id": c, "email": f"p{i}@example.com", "first_name": "Al"}
              for i, c in enumerate(ids(300))]
    root = content_tree(campaigns={"news.yaml": campaign()}, templates={"news.html.j2": PAGE},
                        offers=OFFERS, customers={"customers.csv": people})
    rc, _, err = cli("run", "campaigns/news.yaml", "--out", "out/one", "--as-of", AS_OF,
                     cwd=root)
    assert rc == 0, err
    rows = {r["customer_id"]: r for r in read_manifest(root / "out" / "one")}
    assert len(rows) == 300
    for row in rows.values():
        variant = row["experiment"]["variant"]
        assert row["experiment"]["name"] == "offer-test"
        if variant == HOLDOUT:
            assert row["status"] == "excluded"
            assert row["reason"] == "holdout (experiment offer-test)"
            assert row["files"] == {}
        else:
            assert row["status"] == "rendered"
            assert row["modules"]["offer"] == [EXPERIMENT["variants"][variant]]
            page = (root / "out" / "one" / row["files"]["html"]).read_text(encoding="utf-8")
            assert f"{EXPERIMENT['variants'][variant]}:" in page
    assert {r["experiment"]["variant"] for r in rows.values()} == {"a", "b", HOLDOUT}
    # a reordered, grown file: everyone keeps their variant
    grown = list(reversed(people)) + [{"id": c, "email": f"n{c}@example.com"}
                                      for c in ids(50, start=300)]
    write_customers_file(root / "data" / "grown.csv", grown)
    rc, _, err = cli("run", "campaigns/news.yaml", "--customers", "data/grown.csv", "--out",
                     "out/two", "--as-of", AS_OF, cwd=root)
    assert rc == 0, err
    again = {r["customer_id"]: r for r in read_manifest(root / "out" / "two")}
    assert all(again[c]["experiment"] == rows[c]["experiment"] for c in rows)


@pytest.mark.parametrize("change, words", [
    ({"slot": "offers"}, "experiment.slot 'offers' is not a slot"),
    ({"variants": {"a": "o-vip", "b": "o-missing"}}, "no offer module 'o-missing'"),
    ({"split": {"a": 60, "b": 50}}, "more than 100 percent"),
    ({"split": {"a": 50}}, "exactly the keys"),
    ({"slot": "subject", "variants": {"a": "Hi {{ customer.first_name", "b": "Hello"}},
     "experiment variant a: the subject line is not a template"),
    ({"decide": {"min_per_variant": 0}}, "min_per_variant"),
])
def test_a_wrong_experiment_stops_the_run_naming_the_file(
        content_tree: Callable[..., Path], cli: Callable[..., Any],
        change: dict[str, Any], words: str) -> None:
    root = content_tree(campaigns={"news.yaml": campaign(experiment=EXPERIMENT | change)},
                        templates={"news.html.j2": PAGE}, offers=OFFERS,
                        customers={"customers.csv": [{"id": "1", "email": "a@example.com"}]})
    rc, out, err = cli("run", "campaigns/news.yaml", "--out", "out", "--as-of", AS_OF,
                       cwd=root)
    assert rc == 2, out + err
    assert words in err and "campaigns/news.yaml" in err and "Traceback" not in err
    assert not (root / "out").exists()


def test_experiment_report_over_a_send_and_its_clicks(
        content_tree: Callable[..., Path], cli: Callable[..., Any]) -> None:
    people = [{"id": c, "email": f"p{i}@example.com", "first_name": "Al"}
              for i, c in enumerate(ids(200))]
    root = content_tree(campaigns={"news.yaml": campaign()}, templates={"news.html.j2": PAGE},
                        offers=OFFERS, customers={"customers.csv": people})
    rc, out, err = cli("experiment", "report", "campaigns/news.yaml", "--json", cwd=root)
    assert rc == 0, err
    assert json.loads(out)["verdict"] == "keep testing"   # nothing sent yet
    rc, _, err = cli("run", "campaigns/news.yaml", "--out", "out/m1", "--as-of", AS_OF,
                     "--send", "--yes", "--mailing", "m1", cwd=root)
    assert rc == 0, err
    rows = read_manifest(root / "out" / "m1")
    sent = Counter(r["experiment"]["variant"] for r in rows if r["status"] == "sent")
    # every variant-b customer clicks (twice: counted once), a few of a; a scanner too
    from edition.render.tracking import secrets_from_env, verify
    secret = secrets_from_env()
    clickers = Counter()
    with ClickStore(root / "out" / "suppression.sqlite") as store:
        for row in rows:
            if row["status"] != "sent":
                continue
            variant = row["experiment"]["variant"]
            if variant == "a" and clickers["a"] >= 3:
                continue
            page = (root / "out" / "m1" / row["files"]["html"]).read_text(encoding="utf-8")
            token = page.split("https://go.acme.example/c/", 1)[1].split('"', 1)[0]
            c = verify(token, secret)
            assert c.customer_id == row["customer_id"] and c.module == row["modules"]["offer"][0]
            for machine in ("", "") if variant == "b" else ("", "scanner"):
                store.record(campaign=c.campaign, mailing=c.mailing, version=c.version,
                             module=c.module, url=c.url, segments=c.segments,
                             customer_id=c.customer_id,
                             client=row["customer_id"].encode().hex()[:32],
                             machine_reason=machine)
            clickers[variant] += 1
    rc, out, err = cli("experiment", "report", "campaigns/news.yaml", "--json", cwd=root)
    assert rc == 0, err
    data = json.loads(out)
    arms = {v["variant"]: v for v in data["variants"]}
    assert (arms["a"]["sends"], arms["b"]["sends"]) == (sent["a"], sent["b"])
    assert (arms["a"]["clicks"], arms["b"]["clicks"]) == (3, sent["b"])
    assert arms["b"]["rate"] == 1.0
    lo, hi = arms["a"]["interval"]
    assert lo < arms["a"]["rate"] < hi
    assert data["verdict"] == "winner" and data["winner"] == "b"
    assert arms["b"]["p_best"] > 0.99
    assert data["holdout"]["customers"] == sum(
        r["experiment"]["variant"] == HOLDOUT for r in rows)
    rc, text, err = cli("experiment", "report", "campaigns/news.yaml", cwd=root)
    assert rc == 0 and "Verdict: winner — b" in text, text + err
    # the campaign by its name, as design.md writes it (`edition experiment report CAMPAIGN`)
    rc, by_name, err = cli("experiment", "report", "news", "--json", cwd=root)
    assert rc == 0 and json.loads(by_name) == data, err
    rc, _, err = cli("experiment", "report", "nope", cwd=root)
    assert rc == 2 and "no campaign 'nope'" in err and "Traceback" not in err
    # a campaign without an experiment: a usage error, no traceback
    plain = yaml.safe_load((root / "campaigns" / "news.yaml").read_text(encoding="utf-8"))
    plain.pop("experiment")
    (root / "campaigns" / "plain.yaml").write_text(yaml.safe_dump(plain), encoding="utf-8")
    rc, _, err = cli("experiment", "report", "campaigns/plain.yaml", cwd=root)
    assert rc == 2 and "declares no experiment" in err and "Traceback" not in err


def test_a_subject_line_experiment_gives_each_variant_its_subject(
        content_tree: Callable[..., Path], cli: Callable[..., Any]) -> None:
    """design.md: `experiment: {slot: SLOT | subject, variants: {KEY: module id | subject
    text}}`: a subject-line test; each variant its own version, the holdout excluded."""
    subjects = {"a": "{{ customer.first_name | default('Friend') }}, this week's offer",
                "b": "Your offer is waiting"}
    test = EXPERIMENT | {"name": "subject-test", "slot": "subject", "variants": subjects}
    people = [{"id": c, "email": f"p{i}@example.com", "first_name": "Zoë" if i % 2 else ""}
              for i, c in enumerate(ids(200))]
    root = content_tree(campaigns={"news.yaml": campaign(experiment=test)},
                        templates={"news.html.j2": PAGE.replace(
                            "<body>", "<body><h1>{{ campaign.subject }}</h1>")},
                        offers=OFFERS, customers={"customers.csv": people})
    rc, _, err = cli("run", "campaigns/news.yaml", "--out", "out/one", "--as-of", AS_OF,
                     cwd=root)
    assert rc == 0, err
    rows = list(read_manifest(root / "out" / "one"))
    by_variant: dict[str, set[str]] = {}
    for row in rows:
        variant = row["experiment"]["variant"]
        assert row["experiment"]["name"] == "subject-test"
        if variant == HOLDOUT:
            assert row["status"] == "excluded" and row["files"] == {}
            continue
        by_variant.setdefault(variant, set()).add(row["version"])
        message = BytesParser(policy=policy.default).parsebytes(
            (root / "out" / "one" / row["files"]["eml"]).read_bytes())
        subject = str(message["Subject"])
        if variant == "b":
            assert subject == "Your offer is waiting"
        else:
            who = next(p for p in people if p["id"] == row["customer_id"])["first_name"]
            assert subject == f"{who or 'Friend'}, this week's offer", subject
        # the page's campaign.subject is the line this customer's variant gives
        page = (root / "out" / "one" / row["files"]["html"]).read_text(encoding="utf-8")
        assert f"<h1>{html.escape(subject, quote=False)}</h1>" in page.replace("&#39;", "'")
    assert set(by_variant) == {"a", "b"}
    assert not by_variant["a"] & by_variant["b"]   # never one version for two subjects


def test_the_send_campaign_flow_publishes_the_experiment_report(
        prefect_harness: None, content_tree: Callable[..., Path],
        cli: Callable[..., Any]) -> None:
    """The report `edition experiment report` prints, as the flow run's markdown artifact
    `experiment-<campaign>`, after a send from the send-campaign flow."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.campaign import RunSettings, send_campaign

    people = [{"id": c, "email": f"p{i}@example.com", "first_name": "Al"}
              for i, c in enumerate(ids(60))]
    root = content_tree(campaigns={"news.yaml": campaign()}, templates={"news.html.j2": PAGE},
                        offers=OFFERS, customers={"customers.csv": people})
    state = send_campaign(campaign=str(root / "campaigns" / "news.yaml"),
                          customers=str(root / "data" / "customers.csv"), dry_run=False,
                          confirm_send=True, return_state=True,
                          advanced=RunSettings(out=str(root / "out" / "m1"),
                                               review_before_send=False))
    assert state.is_completed(), state
    sent = [r for r in read_manifest(root / "out" / "m1") if r["status"] == "sent"]
    assert sent
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
            if a.key}
    assert "experiment-news" in artifacts, sorted(artifacts)
    rc, text, err = cli("experiment", "report", "campaigns/news.yaml", cwd=root)
    assert rc == 0, err
    assert artifacts["experiment-news"].data == text
    assert f"| a | o-vip | {sum(r['experiment']['variant'] == 'a' for r in sent):,} |" in text
