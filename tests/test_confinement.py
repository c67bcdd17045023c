"""A served run reads and writes only where `edition serve` allows (edition/run/roots.py).

Anyone with UI access fills in the form, so under `edition serve` the parameters of
send-campaign and preview-customer are refused, before any work and with nothing
written, when they point outside the content root: customers=/etc/passwd, an `out`
folder elsewhere or among the content (articles/), a `../` path, a symlink out of the
root, a `to: local:/…` folder, another SMTP host, a Dask scheduler no one named. Roots
named with `--allow` work; without serve nothing is confined.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from edition.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
CONTENT = ("campaigns", "templates", "articles", "offers", "greetings")
OUTSIDE = "outside the content root"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    for folder in CONTENT:
        shutil.copytree(REPO / folder, root / folder)
    from edition.audience.sampledata import write_customers

    write_customers(root / "data" / "customers.csv", 20, seed=7)
    return root


@pytest.fixture
def elsewhere(tmp_path: Path, site: Path) -> Path:
    """A folder beside the content root with a customer file and an empty folder."""
    folder = tmp_path / "elsewhere"
    (folder / "runs").mkdir(parents=True)
    shutil.copy(site / "data" / "customers.csv", folder / "customers.csv")
    (site / "data" / "link.csv").symlink_to(folder / "customers.csv")
    (site / "out").mkdir()
    (site / "out" / "link").symlink_to(folder / "runs", target_is_directory=True)
    return folder


@pytest.fixture
def served(site: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """`served(*allow)`: this process's environment as edition serve --allow … sets it."""
    from edition.run.roots import served_environment

    def serve(*allow: str) -> None:
        for key, value in served_environment(site, tuple(allow)).items():
            monkeypatch.setenv(key, value)

    monkeypatch.chdir(site.parent)  # serve's working directory need not be the root
    return serve


def snapshot(*folders: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() if p.is_file() else b"/" for folder in folders
            for p in sorted(folder.rglob("*"))}


def refused(match: str, **parameters: object) -> str:
    from flows.form import check_parameters

    with pytest.raises(UsageError) as caught:
        check_parameters("weekly-newsletter", **parameters)
    assert match in str(caught.value), str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize("customers", [
    "/etc/passwd", "../elsewhere/customers.csv", "data/../../elsewhere/customers.csv",
    "data/link.csv", "ELSEWHERE/customers.csv"],
    ids=["etc-passwd", "dot-dot", "dot-dot-inside", "symlink-out", "absolute"])
def test_customers_outside_the_root_are_refused_before_any_work(
        site: Path, elsewhere: Path, served: Callable[..., None], customers: str) -> None:
    served()
    before = snapshot(site, elsewhere)
    customers = customers.replace("ELSEWHERE", str(elsewhere))
    message = refused(OUTSIDE, customers=customers)
    assert message.startswith("customers '"), message
    assert snapshot(site, elsewhere) == before  # nothing written, anywhere


@pytest.mark.parametrize("out", [
    "ELSEWHERE/runs/x", "../elsewhere/runs/x", "out/../../elsewhere/runs/x", "out/link/x",
    "articles", ".", "campaigns/run-1"],
    ids=["absolute", "dot-dot", "dot-dot-inside", "symlink-out", "into-the-modules",
         "the-root-itself", "into-campaigns"])
def test_out_outside_the_output_folder_is_refused_before_any_work(
        site: Path, elsewhere: Path, served: Callable[..., None], out: str) -> None:
    from flows.campaign import RunSettings

    served()
    before = snapshot(site, elsewhere)
    out = out.replace("ELSEWHERE", str(elsewhere))
    refused(f"out {str(site / out) if not Path(out).is_absolute() else out!r} is outside "
            f"{site / 'out'}", advanced=RunSettings(out=out))
    assert snapshot(site, elsewhere) == before


def test_a_local_delivery_folder_and_other_hosts_are_confined_too(
        site: Path, elsewhere: Path, served: Callable[..., None]) -> None:
    from flows.form import RunSettings, check_parameters

    served()
    refused(f"to 'local:{elsewhere}' is outside", to=f"local:{elsewhere}")
    refused("to 'smtp://mail.other.example:25' is not the campaign's delivery target",
            to="smtp://mail.other.example:25")
    refused("dask_address 'tcp://10.1.2.3:8786' is not allowed here",
            advanced=RunSettings(task_runner="dask", dask_address="tcp://10.1.2.3:8786"))
    for to in ("local", f"local:{site / 'out' / 'outbox'}"):  # the run folder's, or out/
        assert check_parameters("weekly-newsletter", to=to).to == to


def test_the_roots_named_with_allow_work(site: Path, elsewhere: Path,
                                         served: Callable[..., None]) -> None:
    from flows.form import RunSettings, check_parameters

    served(str(elsewhere), "s3://bucket/runs", "smtp://mail.other.example:25",
           "tcp://10.1.2.3:8786", "postgresql://db.example/crm")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # a remote Dask scheduler needs a Prefect server its workers reach; name one, so this
    # test does not depend on another test having left PREFECT_API_URL set (nothing is
    # contacted: the parameters are only checked)
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        options = check_parameters(
            "weekly-newsletter", customers=str(elsewhere / "customers.csv"),
            to="smtp://mail.other.example:25",
            advanced=RunSettings(out=str(elsewhere / "runs" / "r1"), task_runner="dask",
                                 dask_address="tcp://10.1.2.3:8786"))
    assert options.customers == str(elsewhere / "customers.csv")
    assert options.out == str(elsewhere / "runs" / "r1")
    assert check_parameters("weekly-newsletter", customers="data/link.csv").customers == str(
        elsewhere / "customers.csv")  # the link now points into an allowed folder
    assert check_parameters("weekly-newsletter",
                            advanced=RunSettings(out="s3://bucket/runs/r2")).out == \
        "s3://bucket/runs/r2"
    # prefixes end at a '/': runs-private is not under runs; the user name is not the host
    refused("out 's3://bucket/runs-private/r3' is not allowed",
            advanced=RunSettings(out="s3://bucket/runs-private/r3"))
    refused("customers 'postgresql://db.example/crm2' is not allowed",
            customers="postgresql://db.example/crm2")
    assert check_parameters("weekly-newsletter",
                            customers="postgresql://reader@db.example/crm").customers == \
        "postgresql://reader@db.example/crm"
    refused("is not allowed", customers="postgresql://db.example@evil.example/crm")
    assert not list((elsewhere / "runs").iterdir())


def test_the_campaign_itself_must_be_in_the_root(site: Path, tmp_path: Path,
                                                 served: Callable[..., None]) -> None:
    from flows.form import check_parameters

    other = tmp_path / "other"
    for folder in CONTENT:
        shutil.copytree(site / folder, other / folder)
    served()
    with pytest.raises(UsageError, match=f"campaign .* is {OUTSIDE}"):
        check_parameters(str(other / "campaigns" / "weekly-newsletter.yaml"))


def test_the_preview_reads_no_customer_file_outside_the_root(
        site: Path, elsewhere: Path, served: Callable[..., None]) -> None:
    from flows.preview import check_preview_parameters

    served()
    for customers in ("/etc/passwd", str(elsewhere / "customers.csv"), "data/link.csv"):
        with pytest.raises(UsageError, match=OUTSIDE):
            check_preview_parameters("weekly-newsletter", "C000001", customers)
    path, customers, _ = check_preview_parameters("weekly-newsletter", "C000001",
                                                  "data/customers.csv")
    assert (path, customers) == (site / "campaigns" / "weekly-newsletter.yaml",
                                 str(site / "data" / "customers.csv"))


def test_without_serve_nothing_is_confined(site: Path, elsewhere: Path) -> None:
    from flows.form import RunSettings, check_parameters

    options = check_parameters(str(site / "campaigns" / "weekly-newsletter.yaml"),
                               customers=str(elsewhere / "customers.csv"),
                               to=f"local:{elsewhere}",
                               advanced=RunSettings(out=str(elsewhere / "runs" / "r1")))
    assert options.out == str(elsewhere / "runs" / "r1")
