"""The ``shipyard`` command line: a thin Typer + Rich layer over :class:`~shipyard.service.ModelService`.

Commands live in small modules (``models``, ``aliases``, ``predict``, ``demo``); ``app`` joins them
and turns errors into one-line messages. Heavy libraries (pandas, scikit-learn, the registry) are
imported inside the commands that need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``shipyard`` command (and of ``python -m shipyard``)."""
    from shipyard.cli.app import run

    run(argv)
