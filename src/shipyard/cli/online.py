"""``shipyard online ...``: the state of a model's online learning, and pause, resume, reset, learn."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from shipyard.cli.common import get_service
from shipyard.cli.output import cell, console, say, table, when

if TYPE_CHECKING:
    from shipyard.online import OnlineStore

app = typer.Typer(
    help="Real-time learning of models registered with online=True: status, alerts, pause, resume, reset, learn.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Model name, e.g. fraud-online.")]


def _store() -> OnlineStore:
    from shipyard.online import OnlineStore

    return OnlineStore(get_service())


@app.command("status")
def status(
    name: NameArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as one JSON object.")] = False,
) -> None:
    """Offsets, rolling metric, snapshot and promoted versions, pause flag, lease and alerts of NAME."""
    from shipyard.online.events import OnlineSettings
    from shipyard.online.status import pending_reason

    s = _store().status(name)
    reason = pending_reason(s, OnlineSettings())
    if as_json:
        data = asdict(s)
        data["lease_expires_at"] = s.lease_expires_at.isoformat() if s.lease_expires_at else None
        data["oldest_pending_at"] = s.oldest_pending_at.isoformat() if s.oldest_pending_at else None
        data["pending_reason"] = reason
        typer.echo(json.dumps(data))
        return
    metric = "-" if s.metric is None else f"{s.metric:.4f}"
    promoted = "-" if s.promoted_metric is None else f"{s.promoted_metric:.4f}"
    out = table("field", "value", title=f"{name} (online)")
    for field, value in (
        ("events", f"{s.last_offset} received, {s.applied_offset} applied, {s.committed_offset} committed, "
                   f"{s.pending} pending"),
        ("pending", reason),
        (f"rolling {s.metric_name or 'metric'}", metric),
        ("versions", f"base {s.base_version}, last snapshot {s.last_snapshot_version}, "
                     f"promoted {s.promoted_version} ({promoted})"),
        ("state", "paused" if s.paused else "learning"),
        ("learner", f"{s.lease_holder} until {when(s.lease_expires_at)}" if s.lease_held else "none"),
        ("alerts", str(s.alerts)),
        ("frozen steps", ", ".join(s.frozen_steps) or "none"),
    ):
        out.add_row(cell(field), cell(value))
    console().print(out)


@app.command("alerts")
def alerts(name: NameArg) -> None:
    """The guardrail alerts of NAME (rollbacks, resets), oldest first."""
    out = table("at", "kind", "from", "to", "message")
    for a in _store().alerts(name):
        out.add_row(cell(when(a.at)), cell(a.kind), cell(a.from_version), cell(a.to_version), cell(a.message))
    console().print(out)


@app.command("pause")
def pause(name: NameArg) -> None:
    """Stop learning NAME (feedback is still recorded and learnt after 'resume')."""
    _store().pause(name)
    say(f"{name}: learning paused")


@app.command("resume")
def resume(name: NameArg) -> None:
    """Learn NAME again after 'pause'."""
    _store().resume(name)
    say(f"{name}: learning resumed")


@app.command("reset")
def reset(name: NameArg) -> None:
    """Point production back at the registered base version and learn only from events arriving after now."""
    store = _store()
    store.reset(name)
    s = store.status(name)
    say(f"{name}: reset to version {s.base_version}; learning from offset {s.committed_offset}")


@app.command("learn")
def learn(
    name: NameArg,
    snapshot_every: Annotated[int, typer.Option(min=1, help="Snapshot after this many events.")] = 1000,
    snapshot_seconds: Annotated[float, typer.Option(min=0.01, help="...or after this many seconds.")] = 30.0,
    batch: Annotated[int, typer.Option(min=1, help="Events learnt per partial_fit block.")] = 100,
    max_wait: Annotated[float, typer.Option(
        min=0.01, help="Learn events short of a whole block once they waited this many seconds.")] = 5.0,
    floor: Annotated[float | None, typer.Option(help="Live metric floor that rolls production back.")] = None,
) -> None:
    """Run the learner of NAME in the foreground until Ctrl-C (the server's workers also run one)."""
    from shipyard.online.__main__ import main

    options = ["--snapshot-every", str(snapshot_every), "--snapshot-seconds", str(snapshot_seconds),
               "--batch", str(batch), "--max-wait-seconds", str(max_wait)]
    main([name, *options, *(["--floor", str(floor)] if floor is not None else [])])
