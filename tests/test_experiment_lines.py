"""A campaign's experiment naming a module that does not exist stops the run before
anything is rendered, and the message names file and line (design.md, "Command line":
exit 2, "the message names file and line"). Real parts: the CLI in a subprocess."""

from __future__ import annotations

from pathlib import Path

from fixtures_preferences import run_edition

CAMPAIGN = """name: boat-news
template: t.html.j2
subject: Boats
sender: "Boats <b@boats.example>"
formats: [html]
slots:
  offer: {kind: offer, count: 1}
experiment:
  name: offer-test
  slot: offer
  variants:
    a: sail-deal
    b: sail-dael
  split: {a: 50, b: 50}
"""


def test_an_experiment_variant_without_its_module_names_the_line(tmp_path: Path) -> None:
    for folder in ("campaigns", "templates", "offers"):
        (tmp_path / folder).mkdir()
    (tmp_path / "campaigns" / "boats.yaml").write_text(CAMPAIGN, encoding="utf-8")
    (tmp_path / "templates" / "t.html.j2").write_text(
        '<html lang="en">{% for o in offer %}{{ o.html }}{% endfor %}</html>\n',
        encoding="utf-8")
    (tmp_path / "offers" / "sail-deal.md").write_text("---\ntitle: Sails\n---\nSails.\n",
                                                       encoding="utf-8")
    (tmp_path / "customers.csv").write_text("id;email\n1;a@boats.example\n", encoding="utf-8")
    for verb in ("validate", "run"):
        code, out, err = run_edition(verb, "campaigns/boats.yaml", "--customers",
                                     "customers.csv", cwd=tmp_path)
        assert code == 2, out + err
        assert ("campaigns/boats.yaml:13: experiment variant b: no offer module "
                "'sail-dael' for slot 'offer'") in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.html"))
