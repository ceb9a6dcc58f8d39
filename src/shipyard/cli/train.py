"""``shipyard train``: train a model from a spec, one-off or incrementally, register it, maybe promote it.

Progress goes to stderr; the result (the registered version, the old-vs-new table on the same
holdout, what happened to the alias) to stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shipyard.cli.common import get_service
from shipyard.cli.output import cell, console, err_console, number, say, table

PROMOTION_REFUSED = 3
"""Exit code of ``shipyard train --promote`` when the new version is not good enough to move the alias."""

if TYPE_CHECKING:
    from rich.table import Table

    from shipyard.training import Comparison, TrainResult


def train(
    spec: Annotated[
        Path, typer.Argument(metavar="SPEC", help="Training spec (YAML): data, target, features, estimator, metrics.")
    ],
    promote: Annotated[
        str | None,
        typer.Option(
            "--promote",
            metavar="ALIAS",
            help="Move ALIAS (e.g. production) to the new version if it is at least as good as the current one "
            "on the same holdout (first metric); exit code 3 when it is not (the version is registered, the "
            "alias stays).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="With --promote: move the alias even if worse.")] = False,
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental",
            help="Continue training an existing version with partial_fit on the data it has not seen "
            "(data.incremental in the spec says how to find it); with no new data, says 'nothing new' and exits 0.",
        ),
    ] = False,
    from_ref: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="REF",
            help="With --incremental: the version to continue, e.g. fraud@production (default: the spec's model, "
            "production alias else latest).",
        ),
    ] = None,
) -> None:
    """Train the model SPEC describes, register it as a new version, and compare it with the current one.

    Exit codes: 0 done (also --incremental with nothing new: nothing is registered), 1 error, 3 --promote
    refused to move the alias because the new version is worse (it is registered all the same).
    """
    from shipyard.errors import InvalidInput
    from shipyard.training import train as run_training
    from shipyard.training.errors import NoNewData

    if force and promote is None:
        raise InvalidInput("--force only applies with --promote ALIAS")
    if from_ref is not None and not incremental:
        raise InvalidInput("--from only applies with --incremental")
    status = err_console()

    def progress(line: str) -> None:
        status.print(line, markup=False, highlight=False, soft_wrap=True, style="dim")

    try:
        result = run_training(
            spec, promote=promote, force=force, incremental=incremental, from_ref=from_ref,
            service=get_service(), progress=progress,
        )
    except NoNewData as exc:  # not a failure: a scheduled run found nothing to learn from
        say(f"nothing new: {exc.message}")
        return
    show_result(result)
    if result.promotion is not None and not result.promotion.moved:
        raise typer.Exit(PROMOTION_REFUSED)


def show_result(result: TrainResult) -> None:
    """Print what a training run did: the new version, the comparison table, the alias, the notes."""
    mv = result.version
    parent = f", parent {result.parent.ref}" if result.parent is not None else ""
    files = f" from {len(result.files_read)} new files" if result.mode == "incremental" and result.files_read else ""
    say(f"Registered {mv.ref} ({result.mode}{parent}): trained on {result.rows:,} rows{files}, "
        f"scored on {result.holdout_rows:,} holdout rows")
    console().print(comparison_table(result.comparison))
    for baseline in result.comparison.baselines:
        if baseline.error:
            say(f"note: {baseline.ref} could not be scored on this holdout: {baseline.error}")
    for note in result.notes:
        say(f"note: {note}")
    promotion = result.promotion
    if promotion is not None:
        before = "none" if promotion.from_version is None else str(promotion.from_version)
        if promotion.moved:
            say(f"{mv.name}@{promotion.alias}: {before} -> {promotion.to_version} ({promotion.reason})")
        else:
            say(f"{mv.name}@{promotion.alias} stays at {before}: {promotion.reason}")
    elif mv.aliases == ():
        say(f"Next: shipyard alias set {mv.name} production {mv.version}")


def comparison_table(comparison: Comparison) -> Table:
    """Metrics of the earlier versions and the new one on the same holdout, with the change.

    >>> from shipyard.training.metrics import resolve_metric
    >>> from shipyard.training.promote import Comparison, Scored
    >>> t = comparison_table(Comparison((resolve_metric("accuracy"),),
    ...     (Scored("fraud:1", 1, ("production",), {"accuracy": 0.8}),),
    ...     Scored("fraud:2", 2, ("new",), {"accuracy": 0.85}), holdout_rows=100))
    >>> [c.header for c in t.columns]
    ['Metric', 'fraud:1 (production)', 'fraud:2 (new)', 'Change']
    """
    headers = ["Metric", *[b.label for b in comparison.baselines], comparison.new.label]
    if comparison.baselines:
        headers.append("Change")
    result = table(*headers, title=f"Holdout of {comparison.holdout_rows:,} rows")
    for row in comparison.rows():
        direction = "" if row.greater_is_better else " (lower is better)"
        values = [cell(None if v is None else number(v)) for v in row.old]
        cells = [cell(f"{row.metric}{direction}"), *values, cell(number(row.new))]
        if comparison.baselines:
            if row.change is None:
                cells.append(cell(None))
            else:
                verdict = "better" if row.better and abs(row.change) > 1e-12 else (
                    "same" if row.better else "worse")
                cells.append(cell(f"{row.change:+.4g} {verdict}"))
        result.add_row(*cells)
    return result
