"""What `edition serve` tells the runs it starts: the content root, and where they may
read and write (`edition serve --allow`); paths a form names, relative to the root.

A campaign is named in a run's form by its name, looked up in the content root's
campaigns/ (EDITION_CONTENT_ROOT, else the working directory).

Anyone who can open the UI can fill in a run's form, so a served run reads customers
only under the content root or an allowed folder, writes output only under the content
root's out/ or an allowed folder (never into campaigns/, templates/ or the modules), and
sends or hands work only to the campaign's own delivery target or an allowed URL
(`s3://bucket/prefix`, `postgresql://host/db`, `smtp://host:port`, `tcp://scheduler:8786`).
Paths are resolved (symlinks followed, `..` removed) before they are compared; URLs are
compared by scheme, host, port and path, on `/` boundaries, credentials and query ignored
— except a database's: its query holds edition's `table`/`query` and libpq's connection
parameters (`host=` there wins over the URL's host). An allowed `postgresql://host/db`
lets the form read any table of that database (`?table=…`, read only, as its role may)
but never run SQL of its own (`?query=…`); an allowed `…?table=customers` or
`…?query=<text>` allows exactly that table or that query text; the connection
parameters must be the allowed URL's own, and a user named in it must be the same.

`edition serve` puts its roots in the environment of the flow-run processes it starts
(EDITION_SERVE_ALLOW); without it (`edition run --via-prefect`, a flow called from
Python) nothing is confined.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

from edition.content.campaign import campaign_file, find_root, is_campaign_name
from edition.databases import DATABASE_SCHEMES, is_database_url, masked

ROOT_ENV = "EDITION_CONTENT_ROOT"
ALLOW_ENV = "EDITION_SERVE_ALLOW"


def allow_hint(place: str, *, file: bool = False) -> str:
    """How to let runs use `place`: the exact `edition serve --allow` to restart with
    (a URL without password or query; for a `file`, its folder)."""
    if "://" in place:
        shown = urlsplit(_shown(place))._replace(query="", fragment="").geturl()
    else:
        path = Path(place).expanduser()
        shown = str(path.parent if file else path)
    return f"to allow it, restart serve as: edition serve --allow {shlex.quote(shown)}"


def content_root() -> Path:
    """Where campaign names are looked up: edition serve's content root, else here."""
    return Path(os.environ.get(ROOT_ENV) or ".").resolve()


def resolve_campaign(campaign: str | None) -> Path | None:
    """The campaign file a `campaign` parameter names (a name, or a path), or None."""
    return campaign_file(campaign, content_root()) if campaign else None


def campaign_problem(campaign: str | None) -> str:
    """Why `resolve_campaign` found nothing, in the form's words."""
    if campaign and is_campaign_name(campaign):
        return (f"campaign {campaign!r} not found: no file in "
                f"{content_root() / 'campaigns'} has that name")
    path = Path(campaign).expanduser() if campaign else None
    return (f"campaign file not found: {campaign!r} (looked for "
            f"{path.resolve() if path else '<empty>'}); pass the campaign's name or the "
            f"path of a file in campaigns/")


def resolve_customers(customers: str | None, root: Path | None) -> tuple[str | None, list[str]]:
    """A customer file relative to the content root first, then the working directory;
    a SQL source as it is (checked when it is read). (location, problems)"""
    if not customers:
        return None, []
    if is_database_url(customers):
        return customers, []
    candidate = Path(customers).expanduser()
    if not candidate.is_absolute() and root is not None:
        in_root = root / candidate
        candidate = in_root if in_root.exists() or not candidate.exists() else candidate
    problems = [] if candidate.is_file() else [f"customer file not found: {customers!r}"]
    return str(candidate.resolve()), problems


class Located(NamedTuple):
    """What a form names, found: the campaign file, the customer source, the output
    folder; and every problem, in the form's words."""

    campaign: Path | None
    customers: str | None
    out: str | None
    problems: list[str]


def locate(campaign: str | None, customers: str | None = None, out: str | None = None, *,
           to: str | None = None, dask_address: str | None = None) -> Located:
    """A form's campaign (its name or file), customers and output folder found from the
    content root (customers: then the working directory), with what a run served from
    it may not use (`Roots.from_env`): send-campaign's form and preview-customer's."""
    path = resolve_campaign(campaign)
    problems = [] if path is not None else [campaign_problem(campaign)]
    root = find_root(path) if path else None
    located, missing = resolve_customers(customers, root)
    problems += missing
    if out and "://" not in out and not Path(out).is_absolute() and root:
        out = str(root / out)  # relative to the content root, like customers
    roots = Roots.from_env()
    if roots is not None:
        problems += roots.problems(campaign=path, customers=located, out=out, to=to,
                                   own_target=own_target(path) if to else None,
                                   dask_address=dask_address)
    return Located(path, located, out or None, problems)


def own_target(path: Path | None) -> str | None:
    """The campaign's delivery target (a `to` equal to it needs no --allow)."""
    if path is None:
        return None
    from edition.content.campaign import load_campaign

    try:
        return load_campaign(path).target
    except Exception:  # an invalid campaign is reported by its own check, with file and line
        return None


@dataclass(frozen=True)
class Roots:
    """The content root, plus the folders and URL prefixes named with --allow."""

    root: Path
    folders: tuple[Path, ...] = ()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, root: Path | str, allow: Iterable[str] = ()) -> Roots:
        allow = [str(a) for a in allow]
        return cls(root=Path(root).resolve(),
                   folders=tuple(Path(a).expanduser().resolve() for a in allow if "://" not in a),
                   prefixes=tuple(a for a in allow if "://" in a))

    @classmethod
    def from_env(cls) -> Roots | None:
        """The roots edition serve set for this process, or None (not confined)."""
        text = os.environ.get(ALLOW_ENV)
        if not text:
            return None
        data = json.loads(text)
        return cls(root=Path(data["root"]), folders=tuple(Path(f) for f in data["folders"]),
                   prefixes=tuple(data["prefixes"]))

    def environment(self) -> dict[str, str]:
        """What the runs `edition serve` starts find in their environment: the content
        root (campaign names are looked up there) and these roots (`from_env`)."""
        return {ROOT_ENV: str(self.root), ALLOW_ENV: json.dumps({
            "root": str(self.root), "folders": [str(f) for f in self.folders],
            "prefixes": list(self.prefixes)})}

    # -- checks -------------------------------------------------------------------------

    def readable(self, path: Path | str) -> bool:
        return _under(Path(path).resolve(), (self.root, *self.folders))

    def writable(self, path: Path | str) -> bool:
        return _under(Path(path).resolve(), ((self.root / "out").resolve(), *self.folders))

    def reachable(self, url: str) -> bool:
        return any(_url_under(url, prefix) for prefix in self.prefixes)

    def problems(self, *, campaign: Path | None = None, customers: str | None = None,
                 out: str | None = None, to: str | None = None,
                 own_target: str | None = None, dask_address: str | None = None) -> list[str]:
        """What a run may not do here, in the form's words (empty: all allowed)."""
        found = []
        if campaign is not None and not self.readable(campaign):
            found.append(f"campaign {str(campaign)!r} is outside the content root")
        if customers:
            found += self._location("customers", customers, "the content root",
                                    self.readable, allow_hint(customers, file=True))
        if out:
            found += self._location("out", out, str(self.root / "out"), self.writable,
                                    allow_hint(out))
        if to and to != "local" and to != own_target:
            scheme, _, where = to.partition(":")
            if scheme == "local":
                if not self.writable(where):
                    found.append(f"to {to!r} is outside {self.root / 'out'} and the folders "
                                 f"edition serve allows (--allow); {allow_hint(where)}")
            elif not self.reachable(to):
                found.append(f"to {_shown(to)!r} is not the campaign's delivery target, "
                             f"and runs started from the UI may deliver only there "
                             f"({allow_hint(to)})")
        if dask_address and not self.reachable(dask_address):
            found.append(f"dask_address {_shown(dask_address)!r} is not allowed here "
                         f"({allow_hint(dask_address)})")
        return found

    def _location(self, name: str, value: str, inside: str,
                  allowed: Callable[[str], bool], path_hint: str) -> list[str]:
        """A URL must be one serve allows; a path must lie inside `inside` or an
        allowed folder (read for customers, written for out)."""
        if "://" in value:
            return ([] if self.reachable(value)
                    else [f"{name} {_shown(value)!r} is not allowed here ({allow_hint(value)})"])
        return ([] if allowed(value)
                else [f"{name} {value!r} is outside {inside} and the folders edition serve "
                      f"allows (--allow); {path_hint}"])


def _under(real: Path, roots: Iterable[Path]) -> bool:
    return any(real == root or real.is_relative_to(root) for root in roots)


def _parts(url: str) -> tuple[str, str, int | None, list[str]]:
    split = urlsplit(url.strip())
    try:
        port = split.port
    except ValueError:
        port = -1
    scheme = split.scheme.lower().split("+")[0]     # postgresql+psycopg is postgresql
    return scheme, (split.hostname or "").lower(), port, [p for p in split.path.split("/") if p]


def _url_under(url: str, prefix: str) -> bool:
    scheme, host, port, path = _parts(url)
    p_scheme, p_host, p_port, p_path = _parts(prefix)
    if (scheme, host, port) != (p_scheme, p_host, p_port) or path[:len(p_path)] != p_path:
        return False
    return scheme not in DATABASE_SCHEMES or _same_database_use(url, prefix)


_SOURCE_PARAMS = ("table", "query")   # edition's own (edition.sources), not libpq's


def _same_database_use(url: str, allowed: str) -> bool:
    """Does a database URL read only what the allowed one lets it (the module docstring)?"""
    mine, theirs = urlsplit(url.strip()), urlsplit(allowed.strip())
    if theirs.username is not None and mine.username != theirs.username:
        return False  # the role decides what a query may read
    asked = parse_qs(mine.query, keep_blank_values=True)
    given = parse_qs(theirs.query, keep_blank_values=True)
    connection = {k: v for k, v in asked.items() if k not in _SOURCE_PARAMS}
    if connection != {k: v for k, v in given.items() if k not in _SOURCE_PARAMS}:
        return False
    if "table" in given or "query" in given:
        return all(_statement(asked.get(k)) == _statement(given.get(k)) for k in _SOURCE_PARAMS)
    return "query" not in asked


def _statement(values: list[str] | None) -> list[str] | None:
    """A `table`/`query` value as edition.sources runs it (outer blanks and a final `;`
    do not change it)."""
    return None if values is None else [v.strip().rstrip(";").strip() for v in values]


def _shown(url: str) -> str:
    """A URL without its password (it never goes into a log): edition.databases.masked."""
    return masked(url)


def served_environment(root: Path | str, allow: Iterable[str] = ()) -> dict[str, str]:
    """The environment of a run served from `root` with `allow` (`Roots.environment`)."""
    return Roots.of(root, allow).environment()
