"""``shipyard deploy``, ``shipyard apply`` and the deployment side of ``shipyard rollback``.

``deploy`` is one command that takes one or two words, because a Typer group cannot take both a model
name and subcommands: ``shipyard deploy NAME --version 4`` changes a deployment, ``shipyard deploy show
NAME`` and ``shipyard deploy history NAME`` look at one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shipyard.cli.common import get_service
from shipyard.cli.output import cell, console, number, print_error, say, table, when
from shipyard.errors import Conflict, InvalidInput

if TYPE_CHECKING:
    from shipyard.registry import DeploymentState
    from shipyard.rollouts.spec import DeploymentSpec, RolloutCounters
    from shipyard.service import ModelService

VIEWS = ("show", "history")

_CANARY = "Canary (--canary)"
_SHADOW = "Shadow (--shadow)"


def deploy(
    words: Annotated[
        list[str],
        typer.Argument(
            metavar="NAME | show NAME | history NAME",
            help="The model to deploy, or 'show NAME' / 'history NAME' to look at its deployment.",
            show_default=False,
        ),
    ],
    version: Annotated[
        int | None,
        typer.Option("--version", min=1, metavar="N", help="Pin all traffic to version N (with --shadow: primary)."),
    ] = None,
    ab: Annotated[
        str | None, typer.Option("--ab", metavar="V:PCT,...", help="A/B split, e.g. 3:90,4:10 (percents add to 100).")
    ] = None,
    sticky: Annotated[
        str | None,
        typer.Option(
            "--sticky",
            metavar="FIELD",
            help="A/B or canary: keep each caller on one version by this request field (or X-Shipyard-Key header).",
        ),
    ] = None,
    canary: Annotated[
        int | None,
        typer.Option("--canary", min=1, metavar="N", help="Start a canary of version N.", rich_help_panel=_CANARY),
    ] = None,
    incumbent: Annotated[
        int | None,
        typer.Option(
            "--incumbent",
            min=1,
            metavar="N",
            help="Version the canary is compared with (default: the version served now).",
            rich_help_panel=_CANARY,
        ),
    ] = None,
    steps: Annotated[
        str | None,
        typer.Option(
            "--steps",
            metavar="PCT,...",
            help="Candidate shares, step by step (default: 5,25,50,100).",
            rich_help_panel=_CANARY,
        ),
    ] = None,
    interval: Annotated[
        str | None,
        typer.Option(
            "--interval",
            metavar="DURATION",
            help="Time each step runs before the next, e.g. 10m, 30s (default: 10m).",
            rich_help_panel=_CANARY,
        ),
    ] = None,
    max_error_rate: Annotated[
        float | None,
        typer.Option(
            "--max-error-rate",
            metavar="FRACTION",
            help="Roll back when the candidate's error rate exceeds this, e.g. 0.01.",
            rich_help_panel=_CANARY,
        ),
    ] = None,
    max_p99_ms: Annotated[
        float | None,
        typer.Option(
            "--max-p99-ms",
            metavar="MS",
            help="Roll back when the candidate's p99 latency exceeds this.",
            rich_help_panel=_CANARY,
        ),
    ] = None,
    min_agreement: Annotated[
        float | None,
        typer.Option(
            "--min-agreement",
            metavar="FRACTION",
            help="Roll back when fewer of the candidate's labels than this equal the incumbent's on the same rows.",
            rich_help_panel=_CANARY,
        ),
    ] = None,
    min_requests: Annotated[
        int | None,
        typer.Option(
            "--min-requests",
            min=0,
            metavar="N",
            help="Candidate requests a step needs before a guard may judge it (default: 50).",
            rich_help_panel=_CANARY,
        ),
    ] = None,
    check: Annotated[
        str | None,
        typer.Option(
            "--check",
            metavar="DURATION",
            help="How often the guards are evaluated (default: 1s).",
            rich_help_panel=_CANARY,
        ),
    ] = None,
    shadow: Annotated[
        int | None,
        typer.Option(
            "--shadow",
            min=1,
            metavar="N",
            help="Copy traffic to version N after the primary answered; its answers are logged, never returned.",
            rich_help_panel=_SHADOW,
        ),
    ] = None,
    sample: Annotated[
        float | None,
        typer.Option(
            "--sample",
            metavar="FRACTION",
            help="Fraction of requests copied to the shadow (default: 1).",
            rich_help_panel=_SHADOW,
        ),
    ] = None,
    alias: Annotated[
        str | None,
        typer.Option(
            "--alias", metavar="ALIAS", help="Stop splitting: follow ALIAS (e.g. production) as without a deployment."
        ),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", metavar="REASON", help="Why, for the history.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="show/history: print JSON.")] = False,
) -> None:
    """Route a model's traffic: pin a version, split A/B, run a canary, add a shadow; or show a deployment.

    \b
    shipyard deploy fraud --version 4
    shipyard deploy fraud --ab 3:90,4:10 --sticky customer_id
    shipyard deploy fraud --canary 4 --steps 5,25,50,100 --interval 10m --max-error-rate 0.01 --max-p99-ms 50
    shipyard deploy fraud --shadow 4 --sample 0.5
    shipyard deploy fraud --alias production
    shipyard deploy show fraud
    shipyard deploy history fraud

    Every change is recorded (who, when, what); running servers follow it within about a second.
    Undo the last change with 'shipyard rollback fraud'.
    """
    options = {
        "version": version,
        "ab": ab,
        "sticky": sticky,
        "canary": canary,
        "incumbent": incumbent,
        "steps": steps,
        "interval": interval,
        "max_error_rate": max_error_rate,
        "max_p99_ms": max_p99_ms,
        "min_agreement": min_agreement,
        "min_requests": min_requests,
        "check": check,
        "shadow": shadow,
        "sample": sample,
        "alias": alias,
    }
    if len(words) == 2 and words[0] in VIEWS:
        given = [f"--{key.replace('_', '-')}" for key, value in options.items() if value is not None]
        if given or reason:
            raise InvalidInput(f"'shipyard deploy {words[0]}' takes no {', '.join(given) or '--reason'}; it only looks")
        (show if words[0] == "show" else history)(get_service(), words[1], as_json=as_json)
        return
    if len(words) != 1:
        raise InvalidInput(
            f"expected NAME, 'show NAME' or 'history NAME', got {' '.join(words)!r}; "
            "e.g. shipyard deploy fraud --version 4"
        )
    if as_json:
        raise InvalidInput("--json applies to 'shipyard deploy show' and 'shipyard deploy history'")
    from shipyard.rollouts.declarative import build_spec

    service = get_service()
    name = words[0]
    spec = build_spec(options)
    state = service.deploy(name, spec, reason=reason)
    say(f"{name}: revision {state.revision}: {state.describe()}")


def show(service: ModelService, name: str, *, as_json: bool = False) -> None:
    """Print the running deployment of ``name`` and, for its revision, each version's counters."""
    state = service.deployment(name)
    served = _served(service, name)
    stats = service.rollout_stats(name, state.revision) if state is not None else {}
    if as_json:
        payload: dict[str, Any] = (
            _state_json(state, name) if state is not None else {"model": name, "revision": 0, "spec": None}
        )
        payload.update(served_version=served, stats={str(v): _finite(c.to_json()) for v, c in stats.items()})
        typer.echo(json.dumps(payload, indent=2))
        return
    if state is None or state.spec is None:
        follows = f" (version {served})" if served is not None else ""
        revision = f" (revision {state.revision})" if state is not None else ""
        say(f"{name}: no deployment{revision}: requests follow alias production{follows}")
        return
    spec = state.deployment_spec()
    assert spec is not None
    say(f"{name}: revision {state.revision}: {spec.describe()}")
    say(f"changed {when(state.at)} by {state.actor} ({state.action}){': ' + state.reason if state.reason else ''}")
    if spec.kind == "alias" and served is not None:
        say(f"alias {spec.alias} points to version {served}")
    if spec.kind == "canary" and spec.canary is not None:
        _canary_status(spec)
    weights = spec.weights()
    versions = sorted(set(spec.versions()) | set(stats))
    if not versions:
        return
    result = table(
        "Version",
        "Role",
        "Traffic %",
        "Requests",
        "Errors",
        "Error rate",
        "p99 ms",
        "Agreement",
        title=f"Versions of {name} (revision {state.revision})",
    )
    for v in versions:
        c = stats.get(v)
        result.add_row(
            cell(v),
            cell(_role(spec, v)),
            cell(_pct(weights.get(v))),
            cell(c.requests if c else 0),
            cell(c.errors if c else 0),
            cell(_ratio(c.error_rate()) if c else None),
            cell(_ms(c) if c else None),
            cell(_ratio(c.agreement()) if c else None),
        )
    console().print(result)


def _canary_status(spec: DeploymentSpec) -> None:
    import time

    plan = spec.canary
    assert plan is not None
    steps = " -> ".join(f"{_pct(s)}%" for s in plan.steps)
    say(f"canary {spec.status.replace('_', ' ')}: step {spec.step + 1} of {len(plan.steps)} ({steps})")
    if spec.status == "running" and spec.step_started_at is not None:
        left = max(0.0, spec.step_started_at + plan.interval_s - time.time())
        say(f"next step in {left:.0f}s if the guards hold ({plan.guards()}; judged after {plan.min_requests} requests)")
    if spec.reason:
        say(f"reason: {spec.reason}")


def _role(spec: DeploymentSpec, version: int) -> str:
    if spec.kind == "canary" and spec.canary is not None:
        return "candidate" if version == spec.canary.candidate else "incumbent"
    if spec.kind == "shadow":
        return "shadow" if version == spec.shadow else "primary"
    if spec.kind == "ab":
        return "variant"
    return "pinned" if spec.kind == "pin" else ""


def _pct(value: float | None) -> str | None:
    return None if value is None else (str(int(value)) if float(value).is_integer() else f"{value:g}")


def _ratio(value: float | None) -> str | None:
    return None if value is None else number(value)


def _ms(counters: RolloutCounters) -> str | None:
    p99 = counters.p99_ms()
    if p99 is None:
        return None
    return "> 10000" if math.isinf(p99) else f"{p99:.3g}"


def _finite(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


def _served(service: ModelService, name: str) -> int | None:
    try:
        return service.served_version(name)
    except Conflict:
        return None


def _state_json(state: DeploymentState, name: str) -> dict[str, Any]:
    return {
        "model": name,
        "revision": state.revision,
        "spec": state.spec,
        "description": state.describe(),
        "action": state.action,
        "reason": state.reason,
        "actor": state.actor,
        "at": state.at.isoformat(),
    }


def history(service: ModelService, name: str, *, as_json: bool = False) -> None:
    """Print every change of ``name``'s deployment, oldest first."""
    states = service.deployment_history(name)
    if as_json:
        typer.echo(json.dumps([_state_json(s, name) for s in states], indent=2))
        return
    if not states:
        say(f"no deployment changes recorded for {name}; deploy with 'shipyard deploy {name} --version N'")
        return
    result = table("Rev", "When", "Who", "Action", "Deployment", "Reason", title=f"Deployment history of {name}")
    for state in states:
        result.add_row(
            cell(state.revision),
            cell(when(state.at)),
            cell(state.actor),
            cell(state.action),
            cell(state.describe()),
            cell(state.reason),
        )
    console().print(result)


def apply(
    path: Annotated[
        Path, typer.Argument(metavar="FILE", help="YAML (or JSON) file: model name -> deployment.", show_default=False)
    ],
    reason: Annotated[str, typer.Option("--reason", metavar="REASON", help="Why, for the history.")] = "",
) -> None:
    """Apply a declarative deployments file: each model's entry becomes its deployment.

    \b
    fraud:
      canary: {version: 4, steps: [5, 25, 50, 100], interval: 10m, max_error_rate: 0.01}
    churn: {ab: "3:90,4:10", sticky: customer_id}
    spam: {shadow: 4, sample: 0.5}
    risk: {version: 7}
    legacy: {alias: production}

    The whole file is checked (syntax, models, versions) before anything is written, and every problem is
    reported, one line each (exit code 1); each changed model is then one recorded change (action 'apply'),
    and models whose deployment already matches are left alone.
    """
    from shipyard.rollouts.declarative import check_deployments

    data = _read_file(path)
    service = get_service()
    plan: list[tuple[str, DeploymentSpec, int]] = []
    unchanged_lines: list[str] = []

    def verify(name: str, spec: DeploymentSpec) -> None:
        resolved, revision, unchanged = _prepare(service, name, spec)
        if unchanged:
            unchanged_lines.append(f"{name}: unchanged (revision {revision}: {unchanged})")
        else:
            plan.append((name, resolved, revision))

    _, problems = check_deployments(data, verify)
    if problems:  # every problem of the file at once, one line each; nothing is written
        for problem in problems:
            print_error(problem)
        raise typer.Exit(1)
    for line in unchanged_lines:
        say(line)
    for name, resolved, revision in plan:
        state = service.deploy(name, resolved, action="apply", reason=reason, expected_revision=revision)
        say(f"{name}: revision {state.revision}: {state.describe()}")
    if not plan:
        say("nothing to change")


def _read_file(path: Path) -> Any:
    if not path.is_file():
        raise InvalidInput(f"no deployments file at {path}")
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidInput(f"{path} is not valid YAML{where}: {problem}") from None


def _prepare(service: ModelService, name: str, spec: DeploymentSpec) -> tuple[DeploymentSpec, int, str]:
    """Resolve and check one entry; returns the spec, the revision it applies to, and why it is unchanged."""
    service.get_model(name)
    current = service.deployment(name)
    revision = current.revision if current is not None else 0
    current_spec = current.deployment_spec() if current is not None else None
    if not spec.is_resolved:
        served = service.served_version(name)
        if spec.kind == "canary" and spec.canary is not None and served == spec.canary.candidate:
            return spec, revision, f"version {served} is served already (the canary was promoted)"
        spec = spec.resolved(served)
    for v in spec.versions():
        service.store.get_version(name, v)  # VersionNotFound names it
    if spec.kind == "alias" and spec.alias != "production" and spec.alias not in service.get_model(name).aliases:
        service.store.resolve(name, alias=spec.alias)  # AliasNotFound names it
    if current_spec is not None and current_spec.intent() == spec.intent():
        return spec, revision, current_spec.describe()
    if current_spec is None and spec.kind == "alias" and spec.alias == "production":
        return spec, revision, "no deployment: follows alias production"
    return spec, revision, ""


def rollback_deployment(service: ModelService, name: str, *, prefix: str = "") -> None:
    """Roll back ``name``'s deployment and print the result after ``prefix`` (what was undone)."""
    state = service.rollback_deployment(name)
    say(f"{prefix}{name}: revision {state.revision}: rolled back to: {state.describe()}")
