"""``shipyard demo``: the guided first run (the logic lives in :mod:`shipyard.demo`)."""

from __future__ import annotations

from typing import Annotated

import typer

from shipyard.cli.common import get_service
from shipyard.cli.output import console


def demo(
    rows: Annotated[
        int, typer.Option("--rows", min=200, metavar="N", help="How many synthetic transactions to generate.")
    ] = 5000,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Random seed of the synthetic data.")] = 7,
) -> None:
    """Train a fraud model on synthetic data, register it as 'fraud', promote it to production and score with it."""
    from shipyard.demo import run_demo

    run_demo(get_service(), console(), rows=rows, seed=seed)
