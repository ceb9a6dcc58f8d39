"""``shipyard alias ...`` and ``shipyard rollback``: move, remove, list and audit aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from shipyard.cli.common import get_service
from shipyard.cli.output import cell, console, say, table, version_or_none, when

if TYPE_CHECKING:
    from shipyard.registry import AliasMove

app = typer.Typer(
    help="Point named aliases (production, staging, ...) at model versions, and see who moved them.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Model name, e.g. fraud.")]
AliasArg = Annotated[str, typer.Argument(metavar="ALIAS", help="Alias name, e.g. production.")]


def describe_move(move: AliasMove) -> str:
    """``fraud@production: 3 -> 2`` for one alias move.

    >>> from datetime import datetime, UTC
    >>> from shipyard.registry import AliasMove
    >>> describe_move(AliasMove("fraud", "production", "rollback", 3, 2, "ann", datetime.now(UTC)))
    'fraud@production: 3 -> 2'
    """
    return f"{move.model}@{move.alias}: {version_or_none(move.from_version)} -> {version_or_none(move.to_version)}"


@app.command("set")
def set_alias(
    name: NameArg,
    alias: AliasArg,
    version: Annotated[int, typer.Argument(min=1, metavar="VERSION", help="Version number the alias should point to.")],
) -> None:
    """Point ALIAS of model NAME at VERSION (the move is recorded in the alias history)."""
    move = get_service().set_alias(name, alias, version)
    if move is None:
        say(f"{name}@{alias} already points to {version}; nothing changed")
    else:
        say(describe_move(move))


@app.command("delete")
def delete_alias(name: NameArg, alias: AliasArg) -> None:
    """Remove ALIAS from model NAME (its history is kept, so 'shipyard rollback' can restore it)."""
    move = get_service().delete_alias(name, alias)
    say(f"deleted {name}@{alias} (was {version_or_none(move.from_version)})")


@app.command("list")
def list_aliases(name: NameArg) -> None:
    """List the aliases of model NAME and the versions they point to."""
    model = get_service().get_model(name)
    if not model.aliases:
        say(f"{model.name} has no aliases; set one with 'shipyard alias set {model.name} production VERSION'")
        return
    result = table("Alias", "Version", title=f"Aliases of {model.name}")
    for alias, version in sorted(model.aliases.items()):
        result.add_row(cell(alias), cell(version))
    console().print(result)


@app.command("history")
def history(
    name: NameArg,
    alias: Annotated[
        str | None, typer.Argument(metavar="ALIAS", help="Only this alias (default: every alias).")
    ] = None,
) -> None:
    """Show every move of the aliases of NAME, oldest first: who, when, what, from and to which version."""
    moves = get_service().alias_history(name, alias)
    if not moves:
        which = f"{name}@{alias}" if alias else name
        say(f"no alias moves recorded for {which}")
        return
    title = f"History of {name}@{alias}" if alias else f"Alias history of {name}"
    result = table("When", "Who", "Alias", "Action", "From", "To", title=title)
    for move in moves:
        result.add_row(
            cell(when(move.at)),
            cell(move.actor),
            cell(move.alias),
            cell(move.action),
            cell(version_or_none(move.from_version)),
            cell(version_or_none(move.to_version)),
        )
    console().print(result)


def rollback(
    name: NameArg,
    alias: Annotated[
        str | None,
        typer.Option(
            "--alias", "-a", metavar="ALIAS",
            help="Move this alias back instead (default: the deployment if NAME has one, else production).",
        ),
    ] = None,
) -> None:
    """Undo the last change of NAME: its deployment (see 'shipyard deploy') or, without one, its production alias.

    A deployment goes back to its state before the last change (a canary's automatic steps count as part of
    it); an alias goes back to the version it pointed to before its last move. Repeat to go further back.
    """
    service = get_service()
    if alias is None:
        from shipyard.cli.deploy import rollback_deployment

        if rollback_deployment(service, name):
            return
        alias = "production"
    move = service.rollback(name, alias)
    say(describe_move(move))
