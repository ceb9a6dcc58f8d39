"""``shipyard keys ...``: create, list and revoke the API keys that ``shipyard serve --auth`` accepts.

These commands work on the registry directly: whoever can write the registry administers its keys.
"""

from __future__ import annotations

from typing import Annotated

import typer

from shipyard.cli.common import get_service
from shipyard.cli.output import JsonFlag, cell, console, print_json, say, table, when
from shipyard.errors import InvalidInput

SCOPE_HELP = "predict (predictions and model metadata), feedback (/v1/feedback) or admin (everything)"

app = typer.Typer(
    help="Create, list and revoke API keys for the prediction server.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def split_scopes(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated ``--scope`` values, in order.

    >>> split_scopes(["predict,feedback", " admin "])
    ['predict', 'feedback', 'admin']
    """
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", "-n", metavar="NAME", help="Name of the key, e.g. the client app.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", "-s", metavar="SCOPE", help=f"What the key may do, repeatable: {SCOPE_HELP}."),
    ] = None,
) -> None:
    """Create an API key and print it once: it is not stored and cannot be shown again."""
    scopes = split_scopes(scope)
    if not scopes:
        raise InvalidInput(f"give the key at least one --scope: {SCOPE_HELP}")
    record, plaintext = get_service().create_key(name, scopes)
    say(f"created API key {record.name!r} (key id {record.key_id}, scopes: {', '.join(record.scopes)})", err=True)
    say("store it now, e.g. in a secret manager: it is shown only this once and cannot be recovered", err=True)
    say(plaintext)


@app.command("list")
def list_keys(
    active: Annotated[bool, typer.Option("--active", help="Leave out revoked keys.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """List the API keys: name, key id, scopes, who created them and when, last use, revocation."""
    keys = get_service().list_keys(include_revoked=not active)
    if as_json:
        print_json(keys)
        return
    if not keys:
        which = "active API keys" if active else "API keys yet"
        say(f"no {which}; create one with 'shipyard keys create --name NAME --scope predict'")
        return
    result = table("Name", "Key ID", "Scopes", "Created", "Created by", "Last used", "Revoked", title="API keys")
    for key in keys:
        result.add_row(
            cell(key.name),
            cell(key.key_id),
            cell(", ".join(key.scopes)),
            cell(when(key.created_at)),
            cell(key.created_by),
            cell(when(key.last_used_at) if key.last_used_at else None),
            cell(when(key.revoked_at) if key.revoked_at else None),
        )
    console().print(result)


@app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the key to revoke.")]) -> None:
    """Revoke the API key NAME; running servers refuse it within a few seconds."""
    key = get_service().revoke_key(name)
    say(f"revoked API key {key.name!r} (key id {key.key_id}); servers refuse it within a few seconds")
