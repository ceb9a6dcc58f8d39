"""``shipyard keys``: API keys for the prediction server (being written)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Create, list and revoke API keys for the prediction server.", no_args_is_help=True)
