"""Throughput benchmark: edition (CLI and Prefect flow) vs a naive loop vs mailmerge.

Everything is measured side by side in one run on the same generated customers and the
sample weekly newsletter (html + text + eml), then printed as a table with ratios.

    .venv/bin/python bench/run.py [--customers 20000] [--big 100000] [--naive 1000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CAMPAIGN = ROOT / "campaigns" / "weekly-newsletter.yaml"
AS_OF = "2026-11-23"
ENV = os.environ | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def customers(folder: Path, count: int) -> Path:
    path = folder / f"customers-{count}.csv"
    if not path.exists():
        subprocess.run([BIN / "edition", "sample-data", "--customers", str(count), "--seed", "7",
                        "--out", str(path)], check=True, capture_output=True, env=ENV)
    return path


def watch(cmd: list[str], **kwargs) -> tuple[float, int]:
    """Run a command; wall seconds and the peak RSS summed over its process tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=ENV, **kwargs)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    if proc.returncode:
        raise SystemExit(f"{cmd[:3]} failed with exit {proc.returncode}")
    return time.perf_counter() - start, peak


def edition_cli(data: Path, out: Path) -> tuple[float, int]:
    shutil.rmtree(out, ignore_errors=True)
    return watch([str(BIN / "edition"), "run", str(CAMPAIGN), "--customers", str(data),
                  "--out", str(out), "--formats", "html,text,eml", "--as-of", AS_OF],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


FLOW = textwrap.dedent("""
    import datetime as dt, os, sys, time
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.testing.utilities import prefect_test_harness
    import flows
    from flows.campaign import RunSettings, send_campaign

    def run(campaign, data, out, runner):
        send_campaign(campaign=campaign, customers=data, formats=["html", "text", "eml"],
                      as_of=dt.date(2026, 11, 23),
                      advanced=RunSettings(out=out, task_runner=runner, batch_size=1000))

    if __name__ == "__main__":
        campaign, data, small, out, runner = sys.argv[1:6]
        with prefect_test_harness(server_startup_timeout=120):
            run(campaign, small, out + "-warm", runner)  # server and imports warm
            start = time.perf_counter()
            run(campaign, data, out, runner)
            print(time.perf_counter() - start)
""")


def edition_flow(data: Path, small: Path, out: Path, runner: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    script = out.parent / "flow_bench.py"  # a file, so process workers can import __main__
    script.write_text(FLOW)
    done = subprocess.run([sys.executable, str(script), str(CAMPAIGN), str(data), str(small),
                           str(out), runner], env=ENV, capture_output=True, text=True,
                          cwd=ROOT, check=False)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return float(done.stdout.strip().splitlines()[-1])


def naive(data: Path, count: int, out: Path) -> float:
    """What a first implementation does: Markdown + whole template + MIME per customer."""
    from email.message import EmailMessage
    from email.policy import SMTP

    import css_inline
    import markdown
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment
    from markupsafe import Markup

    from edition.campaign import load_campaign
    from edition.catalog import load_catalog
    from edition.customers import read_customers
    from edition.modules import split_front_matter
    from edition.segments import Segmenter
    from edition.selection import select
    from edition.templating import FILTERS, CustomerView

    campaign = load_campaign(CAMPAIGN)
    catalog, _ = load_catalog(ROOT)
    env = SandboxedEnvironment(loader=FileSystemLoader(str(ROOT / "templates")),
                               undefined=StrictUndefined, autoescape=True)
    env.filters.update(FILTERS)
    page = env.get_template(campaign.template)
    text = env.get_template(campaign.text_template)
    subject = env.from_string(campaign.subject)
    segmenter = Segmenter(campaign.segments)
    slots = [(s.name, s.kind, s.count) for s in campaign.slots]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    as_of = dt.date.fromisoformat(AS_OF)

    class View:
        def __init__(self, module, customer):
            body = split_front_matter((ROOT / module.source).read_text(), module.source)[1]
            self.id, self.kind, self.title, self.meta = (module.id, module.kind, module.title,
                                                         module.meta)
            self.html = Markup(env.from_string(markdown.markdown(body)).render(customer=customer))
            self.text = env.from_string(body).render(customer=customer)

    start = time.perf_counter()
    for row in read_customers(data, need_email=True, limit=count):
        fields = row.fields
        segments, _ = segmenter.assign(fields)
        chosen = select(slots, catalog.by_kind, segments=segments, locale=fields["locale"],
                        interests=fields["interests"], as_of=as_of, campaign=campaign.name)
        customer = CustomerView(fields)
        ctx = {"customer": customer, "segments": list(segments), "locale": fields["locale"],
               "campaign": campaign.context(), "run": {"as_of": as_of}}
        for slot, modules in chosen.modules().items():
            ctx[slot] = [View(m, customer) for m in modules]
        html = css_inline.inline(page.render(ctx))
        plain = text.render(ctx)
        msg = EmailMessage(policy=SMTP)
        msg["Subject"] = subject.render(ctx)
        msg["From"] = campaign.sender
        msg["To"] = fields["email"]
        msg.set_content(plain)
        msg.add_alternative(html, subtype="html")
        (out / f"{row.customer_id}.html").write_text(html)
        (out / f"{row.customer_id}.txt").write_text(plain)
        (out / f"{row.customer_id}.eml").write_bytes(msg.as_bytes())
    return time.perf_counter() - start


def mailmerge(data: Path, count: int, folder: Path, sample_html: str, sample_text: str) -> float:
    """mailmerge --dry-run on the same customers with an equivalent message."""
    template = folder / "mailmerge_template.txt"
    template.write_text(textwrap.dedent("""\
        TO: {{email}}
        SUBJECT: {{first_name}}, your weekly edition
        FROM: Acme Weekly <news@acme.example>
        MIME-Version: 1.0
        Content-Type: multipart/alternative; boundary="boundary"

        --boundary
        Content-Type: text/plain; charset=utf-8

        """) + sample_text + "\n--boundary\nContent-Type: text/html; charset=utf-8\n\n"
        + sample_html + "\n--boundary--\n")
    config = folder / "mailmerge_server.conf"
    config.write_text("[smtp_server]\nhost = 127.0.0.1\nport = 25\nsecurity = Never\n"
                      "username = bench\nratelimit = 0\n")
    db = folder / "mailmerge_database.csv"
    with data.open() as src, db.open("w") as dst:
        for i, line in enumerate(src):
            if i > count:
                break
            dst.write(line)
    start = time.perf_counter()
    subprocess.run([str(BIN / "mailmerge"), "--template", str(template), "--database", str(db),
                    "--config", str(config), "--no-limit", "--dry-run", "--output-format", "raw"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--big", type=int, default=100_000, help="RSS run (0 to skip)")
    parser.add_argument("--naive", type=int, default=1_000)
    parser.add_argument("--mailmerge", type=int, default=500)
    parser.add_argument("--runners", default="thread,process",
                        help="flow runners, e.g. thread,process,dask")
    parser.add_argument("--memory", default="/dev/shm",
                        help="a tmpfs folder: runs there measure the engine, not the disk")
    args = parser.parse_args()
    n = args.customers
    memory = Path(args.memory) if Path(args.memory).is_dir() else None
    with tempfile.TemporaryDirectory(prefix="edition-bench-") as tmp, \
            tempfile.TemporaryDirectory(prefix="edition-bench-",
                                        dir=memory or tmp) as fast_tmp:
        folder, fast = Path(tmp), Path(fast_tmp)
        data = customers(folder, n)
        small = customers(folder, 500)
        rows: list[tuple[str, int, float]] = []
        where = "tmpfs" if memory else "disk"

        cli_s, _ = edition_cli(data, fast / "cli")
        rows.append((f"edition CLI, output on {where}", n, cli_s))
        disk_s, _ = edition_cli(data, folder / "cli-disk")
        shutil.rmtree(folder / "cli-disk", ignore_errors=True)
        rows.append(("edition CLI, output on disk", n, disk_s))
        for runner in [r for r in args.runners.split(",") if r]:
            flow_s = edition_flow(data, small, fast / f"flow-{runner}", runner)
            shutil.rmtree(fast / f"flow-{runner}", ignore_errors=True)
            rows.append((f"edition Prefect flow, {runner} runner, {where}", n, flow_s))
        naive_s = naive(data, args.naive, fast / "naive")
        rows.append((f"naive loop (Markdown + template + MIME per customer), {where}",
                     args.naive, naive_s))
        first = next((fast / "cli" / "html").iterdir())
        html = first.read_text()
        text = (fast / "cli" / "text" / (first.stem + ".txt")).read_text()
        mm_s = mailmerge(data, args.mailmerge, folder, html, text)
        rows.append(("mailmerge --dry-run (messages to /dev/null)", args.mailmerge, mm_s))
        shutil.rmtree(fast / "cli", ignore_errors=True)

        cli_rate = n / cli_s
        print(f"\n## Throughput, {n:,} customers, sample weekly newsletter, html+text+eml\n")
        print("| system | customers | seconds | customers/s | vs edition CLI |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, count, seconds in rows:
            rate = count / seconds
            ratio = "—" if name == rows[0][0] else (
                f"{rate / cli_rate:.2f}× its rate" if name.startswith("edition") else
                f"edition {cli_rate / rate:,.0f}× faster")
            print(f"| {name} | {count:,} | {seconds:,.2f} | {rate:,.0f} | {ratio} |")

        print("\n## Linearity (edition CLI)\n")
        print("| customers | seconds | customers/s |")
        print("| ---: | ---: | ---: |")
        for size in (n // 4, n // 2, n):
            seconds, _ = edition_cli(customers(folder, size), fast / f"lin-{size}")
            print(f"| {size:,} | {seconds:.2f} | {size / seconds:,.0f} |")
            shutil.rmtree(fast / f"lin-{size}", ignore_errors=True)

        if args.big:
            shutil.rmtree(folder / "cli", ignore_errors=True)
            big = customers(folder, args.big)
            seconds, peak = edition_cli(big, fast / "big")
            shutil.rmtree(fast / "big", ignore_errors=True)
            print(f"\n## Memory\n\n{args.big:,} customers: {seconds:.1f} s "
                  f"({args.big / seconds:,.0f}/s), peak RSS of the whole process tree "
                  f"{peak / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
