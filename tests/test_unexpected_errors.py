"""A bug of ours reaches the user as one message and exit 1, never a traceback.

Every verb runs inside `cli.console.user_errors`: the user's mistakes have their own
messages and codes; anything else (a bug, such as the ZeroDivisionError the report once
raised when every customer failed) is named in one line, with the traceback kept in a
private file to attach to a report.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
import typer

from cli.console import user_errors


def test_an_unexpected_error_is_one_line_exit_1_and_a_kept_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def report_figures() -> float:
        return 1 / 0

    with pytest.raises(typer.Exit) as stopped, user_errors():
        report_figures()
    assert stopped.value.exit_code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "unexpected error (ZeroDivisionError: division by zero)" in err
    (kept,) = tmp_path.glob("edition-error-*.txt")
    assert str(kept) in err.replace("\n", "")
    text = kept.read_text(encoding="utf-8")
    assert "Traceback" in text and "report_figures" in text
    assert stat.S_IMODE(kept.stat().st_mode) & 0o077 == 0   # the owner's only


def test_exits_and_usage_errors_pass_through_unchanged() -> None:
    with pytest.raises(typer.Exit) as stopped, user_errors():
        raise typer.Exit(3)
    assert stopped.value.exit_code == 3
    with pytest.raises(typer.BadParameter), user_errors():
        raise typer.BadParameter("no")


def test_a_run_to_s3_without_credentials_says_where_they_come_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's NoCredentialsError on the run folder's first read was not ours to
    expect: it reached the user as a bug. Now exit 1, naming the folder and the fix."""
    import shutil

    from conftest import CONTENT_DIRS, REPO, run_cli

    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    root = tmp_path / "site"
    for folder in CONTENT_DIRS:
        shutil.copytree(REPO / folder, root / folder)
    nothing = tmp_path / "no-aws-files"
    code, _, err = run_cli(
        "sample-data", "--customers", "5", "--out", "data/c.csv", cwd=root)
    assert code == 0, err
    code, _, err = run_cli(
        "run", "campaigns/weekly-newsletter.yaml", "--customers", "data/c.csv",
        "--out", "s3://editions/nov", cwd=root,
        env={"AWS_SHARED_CREDENTIALS_FILE": str(nothing), "AWS_CONFIG_FILE": str(nothing),
             "AWS_EC2_METADATA_DISABLED": "true",
             "EDITION_S3_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert code == 1, err
    assert "unexpected error" not in err and "Traceback" not in err, err
    assert "s3://editions/nov" in err and "Unable to locate credentials" in err, err
    assert "AWS_ACCESS_KEY_ID" in err
