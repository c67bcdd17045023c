"""The house store (SQLite, WAL) written by `edition web` while runs read it: nothing
the server records may be lost when a run in another process opens and closes the
store. Opening a second store object in the server (clicks and preferences each have
one) used to open and close the database file by hand, which drops every POSIX lock the
process holds on it; the next process to close the store then took itself for the last
one, checkpointed and deleted the WAL, and the server went on writing into the deleted
file: the customer's choices were confirmed on the page and never seen again.
Real parts: the CLI in subprocesses, `edition web` on a loopback port, httpx."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
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

from edition.store.database import Database


def link(out: Path, row: dict, pattern: str) -> str:
    html = (out / row["files"]["html"]).read_text(encoding="utf-8")
    found = re.search(pattern, html)
    assert found, html
    return found.group(1).replace("&amp;", "&")


def test_what_edition_web_records_survives_runs_that_read_the_store(tmp_path: Path) -> None:
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    root = make_site(tmp_path / "site", server)
    campaign = json.loads((root / CAMPAIGN).read_text(encoding="utf-8"))
    campaign["tracking"] = {"base_url": server, "level": "aggregate"}
    (root / CAMPAIGN).write_text(json.dumps(campaign), encoding="utf-8")
    template = root / "templates" / "news.html.j2"
    template.write_text(template.read_text(encoding="utf-8").replace(
        "</body>", '<a id="shop" href="https://garden.example/shop">Shop</a></body>'),
        encoding="utf-8")
    customers = write_customers(tmp_path / "customers.csv")
    rows = dry_run(root, customers, tmp_path / "before")
    shop = link(tmp_path / "before", rows["c1"], r'id="shop" href="([^"]+)"')
    assert shop.startswith(f"{server}/c/")
    with web_server(root, port):
        # the click store, then the preference store: two store objects in the server
        click = httpx.get(shop, timeout=60, follow_redirects=False)
        assert click.status_code == 302 and click.headers["location"] == \
            "https://garden.example/shop"
        pause = {"frequency": "paused"}
        first = link(tmp_path / "before", rows["c1"], r'id="prefs" href="([^"]+)"')
        assert httpx.post(first, data=pause, timeout=60).status_code == 200
        # a run reads the store in another process, and closes it
        middle = dry_run(root, customers, tmp_path / "middle")
        assert middle["c1"]["status"] == "suppressed", middle["c1"]
        second = link(tmp_path / "before", rows["c2"], r'id="prefs" href="([^"]+)"')
        assert httpx.post(second, data=pause, timeout=60).status_code == 200
        # a plain sqlite3 reader in another process, as a report script would be
        store = root / "out" / "suppression.sqlite"
        subprocess.run([sys.executable, "-c",
                        f"import sqlite3; sqlite3.connect({str(store)!r}).close()"],
                       check=True, timeout=120)
        third = link(tmp_path / "before", rows["c4"], r'id="prefs" href="([^"]+)"')
        assert httpx.post(third, data=pause, timeout=60).status_code == 200
        after = dry_run(root, customers, tmp_path / "after")
        for customer in ("c1", "c2", "c4"):
            assert after[customer]["status"] == "suppressed", (customer, after[customer])
        code, out, err = run_edition("preferences", "export", "--customer", "c4", cwd=root)
        assert code == 0, out + err
        assert [r["change"]["frequency"] for r in json.loads(out)] == [[None, "paused"]]
    with sqlite3.connect(root / "out" / "suppression.sqlite") as db:
        assert db.execute("select count(*) from clicks").fetchone()[0] == 1


def test_opening_a_store_twice_keeps_the_other_process_from_deleting_the_wal(
        tmp_path: Path) -> None:
    from sqlalchemy import text

    path = tmp_path / "store.sqlite"
    first = Database(path)
    with first.engine().begin() as connection:
        connection.execute(text("create table t (x integer)"))
        connection.execute(text("insert into t values (1)"))
    second = Database(path)   # as edition web opens one per kind of record
    second.engine().connect().close()
    subprocess.run([sys.executable, "-c",
                    f"import sqlite3; c = sqlite3.connect({str(path)!r}); "
                    "c.execute('select * from t').fetchall(); c.close()"],
                   check=True, timeout=120)
    with first.engine().begin() as connection:
        connection.execute(text("insert into t values (2)"))
    seen = subprocess.run([sys.executable, "-c",
                           f"import sqlite3; print(sqlite3.connect({str(path)!r})"
                           ".execute('select count(*) from t').fetchone()[0])"],
                          check=True, timeout=120, capture_output=True, text=True)
    first.close()
    second.close()
    assert seen.stdout.strip() == "2"
