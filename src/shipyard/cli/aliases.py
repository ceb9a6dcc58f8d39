"""``shipyard alias ...`` and ``shipyard rollback``: move, remove, list and audit aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from shipyard.cli.common import get_service
from shipyard.cli.output import JsonFlag, cell, console, print_json, say, table, version_or_none, when
from shipyard.errors import InvalidInput
from shipyard.types import DEFAULT_ALIAS

if TYPE_CHECKING:
    from shipyard.registry import AliasMove
    from shipyard.registry.deployments import Change
    from shipyard.service import ModelService
    from shipyard.signature import Signature

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
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Move the alias even to a version whose input columns differ from the current target's."
        ),
    ] = False,
) -> None:
    """Point ALIAS of model NAME at VERSION (the move is recorded in the alias history).

    A version that takes other input columns than the one ALIAS points to now would break every client of
    ALIAS (422 on each request): that move is refused unless you pass --force.
    """
    service = get_service()
    change = input_change(service, name, alias, version)
    if change is not None and not force:
        raise InvalidInput(f"{change}; clients of {name}@{alias} would get 422s: pass --force to move it anyway")
    move = service.set_alias(name, alias, version)
    if change is not None:
        say(f"warning: {change}", err=True)
    if move is None:
        say(f"{name}@{alias} already points to {version}; nothing changed")
    else:
        say(describe_move(move))


def input_change(service: ModelService, name: str, alias: str, version: int) -> str | None:
    """How VERSION's input columns differ from those of the version ``alias`` points to now (``None``: same)."""
    from shipyard.signature import Signature

    current = service.get_model(name).aliases.get(alias)
    if current is None or current == version:
        return None
    old, new = (service.store.get_version(name, v).signature for v in (current, version))
    if not old or not new:
        return None
    problems = signature_differences(Signature.from_dict(old), Signature.from_dict(new), current, version)
    if not problems:
        return None
    differences = ", ".join(problems)
    return f"{name}:{version} takes other inputs than {name}:{current}, which {alias} points to now: {differences}"


def signature_differences(old: Signature, new: Signature, old_version: int, new_version: int) -> list[str]:
    """The input columns (or tensor) that differ between two signatures, one phrase each.

    >>> from shipyard.signature import Signature
    >>> old = Signature.from_dict({"inputs": [{"name": "a", "dtype": "float64"}, {"name": "c", "dtype": "string"}]})
    >>> new = Signature.from_dict({"inputs": [{"name": "a", "dtype": "int64"}, {"name": "b", "dtype": "bool"}]})
    >>> signature_differences(old, new, 3, 2)
    ["'c' only in version 3", "'b' only in version 2", "'a' is float64 in version 3, int64 in version 2"]
    """
    if old.tensor is not None or new.tensor is not None:
        if old.tensor == new.tensor:
            return []
        shown = [s.tensor.to_dict() if s.tensor else "columns" for s in (old, new)]
        return [f"inputs are {shown[0]} in version {old_version}, {shown[1]} in version {new_version}"]
    before = {c.name: c.dtype for c in old.inputs}
    after = {c.name: c.dtype for c in new.inputs}
    found = [f"{n!r} only in version {old_version}" for n in before if n not in after]
    found += [f"{n!r} only in version {new_version}" for n in after if n not in before]
    found += [
        f"{n!r} is {before[n]} in version {old_version}, {after[n]} in version {new_version}"
        for n in before
        if n in after and before[n] != after[n]
    ]
    return found


@app.command("delete")
def delete_alias(name: NameArg, alias: AliasArg) -> None:
    """Remove ALIAS from model NAME (its history is kept, so 'shipyard rollback' can restore it)."""
    move = get_service().delete_alias(name, alias)
    say(f"deleted {name}@{alias} (was {version_or_none(move.from_version)})")


@app.command("list")
def list_aliases(name: NameArg, as_json: JsonFlag = False) -> None:
    """List the aliases of model NAME and the versions they point to."""
    model = get_service().get_model(name)
    if as_json:
        print_json(dict(sorted(model.aliases.items())))
        return
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
    as_json: JsonFlag = False,
) -> None:
    """Show every move of the aliases of NAME, oldest first: who, when, what, from and to which version."""
    moves = get_service().alias_history(name, alias)
    if as_json:
        print_json(moves)
        return
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
            "--alias",
            "-a",
            metavar="ALIAS",
            help="Move this alias back instead (default: undo the last change of what NAME serves).",
        ),
    ] = None,
) -> None:
    """Undo the last change of what NAME serves, whichever it was: a move of its production alias (or of the
    alias its deployment follows) or a change of its deployment (see 'shipyard deploy'), and say what was undone.

    A deployment goes back to its state before the last change (a canary's automatic steps count as part of
    it, and a promoted canary's move of production is undone with it); an alias goes back to the version it
    pointed to before its last move. Repeat to go further back.
    """
    from shipyard.registry.deployments import last_change

    service = get_service()
    if alias is not None:
        change = last_change([], service.alias_history(name, alias), {alias})
        move = service.rollback(name, alias)
        say(_undid(change) + describe_move(move))
        return
    history = service.deployment_history(name)
    current = history[-1].deployment_spec() if history else None
    followed = current.alias if current is not None and current.kind == "alias" else None
    served = {DEFAULT_ALIAS} | ({followed} if followed else set())
    change = last_change(history, service.alias_history(name), served)
    if change is None and not history:  # nothing recorded: the alias rollback says why in one line
        say(describe_move(service.rollback(name, DEFAULT_ALIAS)))
        return
    if change is None or change.kind != "alias":
        from shipyard.cli.deploy import rollback_deployment

        rollback_deployment(service, name, prefix=_undid(change))
        return
    assert change.move is not None
    move = service.rollback(name, change.move.alias)
    say(_undid(change) + describe_move(move))


def _undid(change: Change | None) -> str:
    """``undid: <what> at <when>; `` for the change a rollback undoes ("" when unknown)."""
    if change is None:
        return ""
    if change.move is not None:
        move = change.move
        if change.kind == "promotion":
            what = f"canary promotion: {move.alias} moved {version_or_none(move.from_version)} -> {move.to_version}"
        elif move.to_version is None:
            what = f"alias {move.alias} deleted (was {version_or_none(move.from_version)})"
        else:
            what = f"alias {move.alias} moved {version_or_none(move.from_version)} -> {move.to_version}"
        return f"undid: {what} by {move.actor} at {when(move.at)}; "
    assert change.state is not None
    state = change.state
    return f"undid: deployment revision {state.revision} ({state.describe()}) by {state.actor} at {when(state.at)}; "
