"""The root ``shipyard`` command: its groups and commands, ``--version``, and error handling.

Errors never reach the user as tracebacks: a :class:`~shipyard.errors.ShipyardError` (whose message
already says how to fix it) prints as one ``error: ...`` line on stderr with exit code 1, and any
other exception as ``error: unexpected <Type>: ...``. ``SHIPYARD_DEBUG=1`` adds the traceback.
Usage mistakes (unknown option, missing argument, bad value) print as one ``error: ... (try 'shipyard X
--help')`` line with exit code 2 (:class:`~shipyard.cli.usage.ShipyardGroup`).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated, NoReturn

import typer

from shipyard.cli.ab import app as ab_app
from shipyard.cli.aliases import app as alias_app
from shipyard.cli.aliases import rollback
from shipyard.cli.batch import app as batch_app
from shipyard.cli.compare import compare
from shipyard.cli.demo import demo
from shipyard.cli.deploy import apply, deploy
from shipyard.cli.keys import app as keys_app
from shipyard.cli.logs import app as logs_app
from shipyard.cli.models import app as models_app
from shipyard.cli.monitor import monitor
from shipyard.cli.online import app as online_app
from shipyard.cli.output import print_error
from shipyard.cli.predict import predict
from shipyard.cli.report import report
from shipyard.cli.serve import serve
from shipyard.cli.train import train
from shipyard.cli.usage import ShipyardGroup
from shipyard.errors import ShipyardError

DEBUG_ENV = "SHIPYARD_DEBUG"

app = typer.Typer(
    name="shipyard",
    cls=ShipyardGroup,
    help="Register, version, alias and score machine-learning models.\n\n"
    "The registry lives in $SHIPYARD_HOME (default ~/.shipyard); set SHIPYARD_REGISTRY_URL and "
    "SHIPYARD_ARTIFACTS_URL to use a shared database and artifact store.",
    epilog="Start with: shipyard demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(models_app, name="models")
app.add_typer(alias_app, name="alias")
app.add_typer(keys_app, name="keys")
app.add_typer(batch_app, name="batch")
app.add_typer(online_app, name="online")
app.add_typer(logs_app, name="logs")
app.add_typer(ab_app, name="ab")
app.command("deploy")(deploy)
app.command("apply")(apply)
app.command("rollback")(rollback)
app.command("compare")(compare)
app.command("predict")(predict)
app.command("demo")(demo)
app.command("serve")(serve)
app.command("train")(train)
app.command("monitor")(monitor)
app.command("report")(report)


def _show_version(value: bool) -> None:
    if value:
        from shipyard import __version__

        typer.echo(f"shipyard {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", help="Show the version and exit.", callback=_show_version, is_eager=True),
    ] = False,
) -> None:
    """Register, version, alias and score machine-learning models."""


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and exit with its status."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="shipyard")
    except ShipyardError as exc:
        if _debug():
            traceback.print_exc()
        print_error(exc.message)
        sys.exit(1)
    except Exception as exc:
        if _debug():
            traceback.print_exc()
            print_error(f"unexpected {type(exc).__name__}: {exc}")
        else:
            print_error(f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)")
        sys.exit(1)
    sys.exit(0)  # pragma: no cover - ShipyardGroup.main always exits itself
