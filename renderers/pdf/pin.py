"""The WeasyPrint the fast path was written for, and the guard on any other.

The fast path reads WeasyPrint's private structures (page boxes, line layout, drawing,
fonts, ``find_stylesheets``). They change between releases without notice, so the fast
path runs only on the release it was written and pixel-tested against (pyproject.toml
pins it); on any other the renderer warns once and renders every PDF whole, which is
slower but uses only WeasyPrint's public API.
"""

from __future__ import annotations

import importlib.metadata
import warnings

WRITTEN_FOR = "70.0"


def installed_weasyprint() -> str:
    return importlib.metadata.version("weasyprint")


def fast_path_problem() -> str | None:
    """Why the fast path must not run here, or None."""
    installed = installed_weasyprint()
    if installed == WRITTEN_FOR:
        return None
    return (f"WeasyPrint {installed} is installed, the PDF fast path was written for "
            f"{WRITTEN_FOR}: every PDF is rendered whole")


_warned: set[str] = set()


def checked() -> str | None:
    """`fast_path_problem`, warned about once per process."""
    problem = fast_path_problem()
    if problem and problem not in _warned:
        _warned.add(problem)
        warnings.warn(problem, RuntimeWarning, stacklevel=3)
    return problem
