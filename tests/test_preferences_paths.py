"""The preference center at the URL the campaign names (design.md, "When customers
answer"): `preferences: {url: ...}` may be any path, not only one ending in
`/preferences`; `edition web` must show the preference page there, record a POST of its
fields and leave the unsubscribe alone. Real parts: the CLI, `edition web` on a loopback
port, httpx as the browser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from fixtures_preferences import (
    CAMPAIGN,
    dry_run,
    free_port,
    make_site,
    run_edition,
    web_server,
    write_customers,
)


def test_a_preference_center_at_a_path_of_the_campaigns_own(tmp_path: Path) -> None:
    port = free_port()
    root = make_site(tmp_path / "site", f"http://127.0.0.1:{port}")
    campaign = json.loads((root / CAMPAIGN).read_text(encoding="utf-8"))
    campaign["preferences"]["url"] = f"http://127.0.0.1:{port}/email-settings"
    (root / CAMPAIGN).write_text(json.dumps(campaign), encoding="utf-8")
    customers = write_customers(tmp_path / "customers.csv")
    rows = dry_run(root, customers, tmp_path / "before")
    html = (tmp_path / "before" / rows["c1"]["files"]["html"]).read_text(encoding="utf-8")
    found = re.search(r'id="prefs" href="([^"]+)"', html)
    assert found, html
    own = found.group(1).replace("&amp;", "&")
    assert own.startswith(f"http://127.0.0.1:{port}/email-settings?token=")
    with web_server(root, port) as _:
        page = httpx.get(own, timeout=60)
        assert page.status_code == 200
        assert 'name="topics" value="garden"' in page.text, page.text   # not the unsubscribe
        assert 'name="List-Unsubscribe"' not in page.text
        tampered = own[:-2] + ("A" if own[-2] != "A" else "B") + own[-1]
        assert httpx.post(tampered, data={"frequency": "paused"}, timeout=60).status_code == 400
        saved = httpx.post(own, data={"frequency": "paused"}, timeout=60)
        assert saved.status_code == 200, saved.text
        # the one-click unsubscribe at the campaign's unsubscribe path still works
        unsub = re.search(r'id="unsub" href="([^"]+)"', html)
        assert unsub
        gone = httpx.post(unsub.group(1).replace("&amp;", "&"),
                          data={"List-Unsubscribe": "One-Click"}, timeout=60)
        assert gone.status_code == 200
    after = dry_run(root, customers, tmp_path / "after")
    assert after["c1"]["status"] == "suppressed"
    assert "paused" in after["c1"]["reason"], after["c1"]["reason"]
    code, out, err = run_edition("preferences", "export", "--customer", "c1", cwd=root)
    assert code == 0, out + err
    records = json.loads(out)
    assert records[0]["change"]["frequency"] == [None, "paused"], records
