"""``shipyard ab report NAME``: traffic, latency and accuracy per variant of an A/B test, and which one wins.

The work is :func:`shipyard.evaluation.abtest.ab_report` over the prediction log ``shipyard serve`` writes
(``$SHIPYARD_HOME/logs``, or what the ``logging`` section of ``--config serve.yaml`` says). The command prints
one row per variant, the significance test(s) and the verdict as the last line, or with ``--json`` the
report as JSON. It exits 0 whatever the verdict (it is a report, not a gate); errors exit 1.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from shipyard.cli.logs import ConfigOption, SinceOption, open_log
from shipyard.cli.output import cell, console, say, table
from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.evaluation.abtest import ABReport, ABRevision

JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]
app = typer.Typer(help="A/B tests: compare the versions that share a model's live traffic.", no_args_is_help=True)


def parse_versions(text: str | None) -> list[int] | None:
    """``"3,4"`` as ``[3, 4]``; ``None`` stays ``None``.

    >>> parse_versions("3, 4"), parse_versions(None)
    ([3, 4], None)
    """
    if text is None:
        return None
    try:
        versions = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidInput(f"--versions expects version numbers separated by commas, e.g. 3,4; got {text!r}") from None
    if not versions or any(v < 1 for v in versions):
        raise InvalidInput(f"--versions expects version numbers of at least 1, e.g. 3,4; got {text!r}")
    return versions


@app.command("report")
def report(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Model name, e.g. fraud.")],
    since: SinceOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    min_labels: Annotated[
        int, typer.Option("--min-labels", min=1, help="Labelled rows each variant needs before a verdict.")
    ] = 100,
    confidence: Annotated[
        float,
        typer.Option(
            "--confidence", min=0.5, max=0.999999, help="Confidence of the intervals; 1 - it is the test level."
        ),
    ] = 0.95,
    versions: Annotated[
        str | None, typer.Option("--versions", metavar="V,V", help="Only these versions, e.g. 3,4 (default: all).")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", help="classification or regression (default: found from the log)."),
    ] = None,
    revision: Annotated[
        int | None,
        typer.Option(
            "--revision", min=1, help="Report on this A/B deployment revision (default: the newest A/B revision)."
        ),
    ] = None,
) -> None:
    """Per variant (version) of NAME's primary traffic: requests, share, latency p50/p95/p99, labelled rows and
    accuracy (MAE for regressors) with a confidence interval; then a significance test between the variants and a
    verdict: which version is better, no significant difference, or a sample too small to decide.

    Accuracy comes from feedback labels (POST /v1/models/NAME/feedback) joined to predictions by request id.
    Rows the shadow version scored are left out.

    By default the report covers the newest A/B deployment revision of NAME: only the traffic logged while it
    ran, and only its variants (so versions served before the test do not count). --revision picks another A/B
    revision; --since reports on everything logged since then instead (all versions, or --versions).
    """
    from shipyard.evaluation.abtest import ab_report
    from shipyard.monitoring.logs import parse_since

    if task is not None and task not in ("classification", "regression"):
        raise InvalidInput(f"--task must be classification or regression, got {task!r}")
    if since and revision is not None:
        raise InvalidInput("give either --since or --revision, not both")
    start = parse_since(since) if since else None
    wanted = parse_versions(versions)
    window = f"last {since}" if since and since.strip()[-1:].isalpha() else (f"since {since}" if since else None)
    run = _revision(name, revision) if since is None else None
    if run is not None:
        start, window = run.since, run.describe()
        wanted = [v for v in wanted if v in run.versions] if wanted else list(run.versions)
        if not wanted:
            raise InvalidInput(
                f"--versions {versions} are not variants of revision {run.revision} (versions "
                f"{', '.join(map(str, run.versions))})"
            )
    result = ab_report(
        open_log(config),
        name,
        since=start,
        until=run.until if run is not None else None,
        versions=wanted,
        task=task,  # type: ignore[arg-type]
        confidence=confidence,
        min_labels=min_labels,
        window=window,
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    show(result)


def _revision(name: str, revision: int | None) -> ABRevision | None:
    """The A/B revision of NAME to report on (see :func:`~shipyard.evaluation.abtest.ab_revision`); ``None``
    when the registry does not know NAME or it never had an A/B deployment (then: everything logged)."""
    from shipyard.cli.common import get_service
    from shipyard.errors import ModelNotFound
    from shipyard.evaluation.abtest import ab_revision

    try:
        history = get_service().deployment_history(name)
    except ModelNotFound:
        if revision is not None:
            raise
        return None
    return ab_revision(history, revision)


def show(result: ABReport) -> None:
    """Print the per-variant table, the tests and the verdict line (last)."""
    level = f"{result.confidence:.0%}" if round(result.confidence * 100, 6).is_integer() else f"{result.confidence:g}"
    metric = "accuracy" if result.metric == "accuracy" else "MAE"
    title = f"A/B report of {result.model} ({result.window}, {result.task})"
    rows = table(
        "version", "requests", "share", "rows", "p50 ms", "p95 ms", "p99 ms", "labelled", metric, f"{level} CI",
        title=title,
    )  # fmt: skip
    for v in result.variants:
        value = None if v.value is None else (f"{v.value:.2%}" if result.metric == "accuracy" else f"{v.value:.4g}")
        interval = None
        if v.ci_low is not None and v.ci_high is not None:
            interval = (
                f"{v.ci_low:.2%} - {v.ci_high:.2%}"
                if result.metric == "accuracy"
                else f"{v.ci_low:.4g} - {v.ci_high:.4g}"
            )
        rows.add_row(
            cell(v.version), cell(f"{v.requests:,}"), cell(f"{v.share_pct:.1f}%"), cell(f"{v.rows:,}"),
            cell(f"{v.p50_ms:.2f}"), cell(f"{v.p95_ms:.2f}"), cell(f"{v.p99_ms:.2f}"), cell(f"{v.labelled:,}"),
            cell(value), cell(interval),
        )  # fmt: skip
    console().print(rows)
    for test in result.tests:
        versions = " vs ".join(f"version {v}" for v in test.versions)
        adjusted = f" (Bonferroni x{test.adjusted})" if test.adjusted > 1 else ""
        say(f"{test.name}, {versions}: statistic {test.statistic:.4g}, p-value {test.p_value:.4g}{adjusted}")
    say(result.verdict)
