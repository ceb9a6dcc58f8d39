"""``shipyard compare REF_A REF_B --data FILE``: are two model versions equivalent on the same rows?

The work is :func:`shipyard.evaluation.compare.compare`; this module prints its result (a summary, the
confusion between the two models' labels, the rows that disagree most and a verdict line), or with
``--json`` the result as JSON, and exits with 1 when the verdict is fail, so that a script or CI job can
use it as a gate.

``shipyard compare NAME --shadow`` compares the live traffic instead: the rows a shadow deployment scored
(route ``shadow`` in the prediction log) against the primary's answers to the same requests
(:func:`shipyard.evaluation.shadow.shadow_report`), with the latency of both; same output, verdict and exit code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shipyard.cli.common import get_service
from shipyard.cli.output import cell, console, say, table
from shipyard.errors import InvalidInput

if TYPE_CHECKING:
    from shipyard.evaluation.compare import Comparison
    from shipyard.evaluation.shadow import ShadowReport

MAX_FEATURES_SHOWN = 8


def compare(
    ref_a: Annotated[
        str, typer.Argument(metavar="REF_A", help="The reference model, e.g. fraud:3 (with --shadow: the model name).")
    ],
    ref_b: Annotated[
        str | None, typer.Argument(metavar="[REF_B]", help="The model compared with it, e.g. fraud:4.")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            metavar="DATA",
            help="Rows to score with both: CSV or Parquet file, folder or glob, or a database URL with ?table=NAME.",
        ),
    ] = None,
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow", help="Compare the shadow version's logged answers with the primary's on the same requests."
        ),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="With --shadow: only rows since then, a duration (30m, 1h, 7d) or an ISO time."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="With --shadow: serve.yaml whose logging section says where the log is."),
    ] = None,
    atol: Annotated[
        float | None,
        typer.Option(
            "--atol",
            min=0.0,
            help="Largest absolute difference of probabilities (or predictions) allowed; default 1e-06, but with "
            "--shadow a classifier's probabilities are checked only when given.",
        ),
    ] = None,
    min_agreement: Annotated[
        float,
        typer.Option("--min-agreement", min=0.0, max=1.0, help="Smallest share of rows with the same label allowed."),
    ] = 1.0,
    top: Annotated[int, typer.Option("--top", min=0, help="How many of the most disagreeing rows to show.")] = 10,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1, metavar="ROWS", help="Rows read and scored at a time.")
    ] = 100_000,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            metavar="COL,...",
            help="For a model trained on an array: its feature columns in training order.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Score DATA with REF_A and REF_B and report label agreement, probability differences, the confusion
    between the two and the rows that disagree most.

    The verdict is pass when the label agreement is at least --min-agreement and the largest absolute
    probability difference (regressors: prediction difference) is at most --atol; the exit code is 1 on
    fail. The models may be of different flavors, e.g. a scikit-learn model and its ONNX export.

    With --shadow (shipyard compare fraud --shadow --since 1h) the rows are the live requests a shadow deployment
    copied: the shadow's logged answers are compared with the primary's on the same request ids, with the latency
    of both.
    """
    if shadow:
        _run_shadow(ref_a, ref_b, data, columns, since, config, atol, min_agreement, top, as_json)
        return
    if ref_b is None or data is None:
        missing = " and ".join(what for what, value in (("REF_B", ref_b), ("--data", data)) if value is None)
        raise InvalidInput(
            f"compare needs {missing}: shipyard compare fraud:3 fraud:4 --data rows.parquet (or shipyard compare "
            "fraud --shadow to compare a shadow deployment's live answers)"
        )
    if since is not None or config is not None:
        raise InvalidInput("--since and --config go with --shadow (the prediction log); without it use --data")
    from shipyard.evaluation.compare import compare as run_compare

    names = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    result = run_compare(
        get_service(),
        ref_a,
        ref_b,
        data,
        atol=1e-6 if atol is None else atol,
        min_agreement=min_agreement,
        top=top,
        chunk_rows=chunk_rows,
        columns=names,
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        show(result)
    if not result.passed:
        raise typer.Exit(1)


def _run_shadow(
    name: str,
    ref_b: str | None,
    data: str | None,
    columns: str | None,
    since: str | None,
    config: Path | None,
    atol: float | None,
    min_agreement: float,
    top: int,
    as_json: bool,
) -> None:
    """``compare NAME --shadow``: print the shadow report, exit 1 when its verdict is fail."""
    from shipyard.cli.logs import open_log
    from shipyard.evaluation.shadow import shadow_report
    from shipyard.monitoring.logs import parse_since
    from shipyard.types import ModelRef

    extra = [what for what, value in (("REF_B", ref_b), ("--data", data), ("--columns", columns)) if value is not None]
    if extra:
        raise InvalidInput(
            f"--shadow compares the prediction log, so {', '.join(extra)} cannot be given with it: "
            f"shipyard compare {name} --shadow [--since 1h]"
        )
    ref = ModelRef.parse(name)
    if ref.version is not None or ref.alias is not None:
        raise InvalidInput(f"--shadow takes a model name, not a version or alias: shipyard compare {ref.name} --shadow")
    window = None
    if since:
        window = f"last {since}" if since.strip()[-1:].isalpha() else f"since {since}"
    result = shadow_report(
        open_log(config),
        ref.name,
        since=parse_since(since) if since else None,
        atol=atol,
        atol_source="--atol",
        min_agreement=min_agreement,
        top=top,
        window=window,
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        show_shadow(result)
    if not result.passed:
        raise typer.Exit(1)


def show_shadow(result: ShadowReport) -> None:
    """Print a shadow report: summary with latency, confusion table, disagreeing rows, notes and the verdict line."""
    comparison = result.comparison
    out = console()
    summary = table("figure", "value", title=f"{result.model}: primary {comparison.ref_a} vs shadow {comparison.ref_b}")
    diff = "probability" if comparison.task == "classification" else "prediction"
    agreement = "label agreement" if comparison.task == "classification" else f"share within {comparison.atol:g}"
    pairs = ", ".join(f"{p} -> {s}: {_rows(n)}" for p, s, n in result.pairs)
    lat = result.latency
    rows: list[tuple[str, Any]] = [
        ("window", result.window),
        ("task", comparison.task),
        ("versions (primary -> shadow)", pairs),
        ("rows served while the shadow ran", f"{result.served_rows:,} (of {_rows(result.primary_rows)} in the window)"),
        ("rows the shadow scored", f"{result.shadow_rows:,} ({result.sampled:.1%} of the rows served meanwhile)"),
        ("rows compared", f"{comparison.rows:,} ({result.coverage:.1%} of the rows served meanwhile)"),
        ("shadow rows without a primary", f"{result.unmatched:,}"),
        (agreement, f"{comparison.agreement:.6g} ({_rows(comparison.disagreements)} differ)"),
        (f"max abs {diff} diff", _number(comparison.max_abs_diff)),
        (f"mean abs {diff} diff", _number(comparison.mean_abs_diff)),
        ("latency p50 / p99 primary", f"{lat['primary']['p50_ms']:.2f} / {lat['primary']['p99_ms']:.2f} ms"),
        ("latency p50 / p99 shadow", f"{lat['shadow']['p50_ms']:.2f} / {lat['shadow']['p99_ms']:.2f} ms"),
        ("thresholds", shadow_thresholds(result)),
    ]
    for key, value in rows:
        summary.add_row(key, cell(value))
    out.print(summary)
    if comparison.labels:
        out.print(_confusion(comparison))
    if comparison.top:
        out.print(_disagreements(comparison))
    for note in comparison.notes:
        say(f"note: {note}")
    say(shadow_verdict_line(result))


def shadow_verdict_line(result: ShadowReport) -> str:
    """:func:`verdict_line`, saying so when a classifier's probabilities were not held to a tolerance."""
    comparison = result.comparison
    if result.atol_source is not None or not comparison.passed:
        return verdict_line(comparison)
    line = f"PASS: labels agree on {comparison.agreement:.2%} of {comparison.rows:,} rows"
    if comparison.max_abs_diff is not None:
        line += (
            f" (probabilities not checked: max absolute difference {comparison.max_abs_diff:.3g}; "
            "give --atol to check them)"
        )
    return line


def shadow_thresholds(result: ShadowReport) -> str:
    """The tolerances a shadow verdict used and where the atol came from, e.g.
    ``min agreement 1; probability atol: not checked (give --atol to check it)``."""
    comparison = result.comparison
    diff = "probability" if comparison.task == "classification" else "prediction"
    agreement = f"min agreement {comparison.min_agreement:g}"
    if result.atol_source is None:
        return f"{agreement}; {diff} atol: not checked (give --atol to check it)"
    return f"{agreement}; {diff} atol {comparison.atol:g} ({result.atol_source})"


def show(result: Comparison) -> None:
    """Print a comparison: summary, confusion table, disagreeing rows, notes and the verdict line."""
    out = console()
    out.print(_summary(result))
    if result.labels:
        out.print(_confusion(result))
    if result.top:
        out.print(_disagreements(result))
    for note in result.notes:
        say(f"note: {note}")
    for row in result.unscored_rows:
        for ref, reason in ((result.ref_a, row.reason_a), (result.ref_b, row.reason_b)):
            if reason is not None:
                say(f"not scored: row {row.row}: {ref}: {reason}")
    if result.unscored > len(result.unscored_rows):
        say(f"not scored: ... {result.unscored - len(result.unscored_rows):,} more rows (--json lists the first)")
    say(verdict_line(result))


def verdict_line(result: Comparison) -> str:
    """``PASS: ...`` or ``FAIL: <each failed condition>``."""
    if not result.passed:
        return f"FAIL: {'; '.join(result.reasons)}"
    what = "labels agree" if result.task == "classification" else "predictions agree within atol"
    line = f"PASS: {what} on {result.agreement:.2%} of {result.rows:,} rows"
    if result.max_abs_diff is not None:
        line += f", max absolute difference {result.max_abs_diff:.3g} <= atol {result.atol:g}"
    if result.unscored:
        line += f" ({_rows(result.unscored)} neither model could score left out)"
    return line


def _summary(result: Comparison) -> Any:
    summary = table(
        "figure", "value", title=f"{result.ref_a} ({result.flavor_a}) vs {result.ref_b} ({result.flavor_b})"
    )
    diff = "probability" if result.task == "classification" else "prediction"
    agreement = "label agreement" if result.task == "classification" else f"share within {result.atol:g}"
    rows: list[tuple[str, Any]] = [
        ("data", result.data),
        ("task", result.task),
        ("rows", f"{result.rows:,}"),
        *([("rows not scored", f"{result.unscored:,} (left out of every figure)")] if result.unscored else []),
        (agreement, f"{result.agreement:.6g} ({_rows(result.disagreements)} differ)"),
        (f"max abs {diff} diff", _number(result.max_abs_diff)),
        (f"mean abs {diff} diff", _number(result.mean_abs_diff)),
        ("thresholds", f"atol {result.atol:g}, min agreement {result.min_agreement:g}"),
        ("time", f"{result.seconds:.2f} s ({result.chunks:,} chunk{'' if result.chunks == 1 else 's'})"),
    ]
    for key, value in rows:
        summary.add_row(key, cell(value))
    return summary


def _confusion(result: Comparison) -> Any:
    labels = [str(label) for label in result.labels]
    confusion = table(f"{result.ref_a} \\ {result.ref_b}", *labels, title="Label confusion")
    for label, counts in zip(labels, result.confusion, strict=True):
        confusion.add_row(cell(label), *(cell(f"{count:,}") for count in counts))
    return confusion


def _disagreements(result: Comparison) -> Any:
    diff = "proba diff" if result.task == "classification" else "diff"
    rows = table("row", result.ref_a, result.ref_b, diff, "features", title=f"Top {len(result.top)} disagreeing rows")
    for row in result.top:
        shown = list(row.features.items())[:MAX_FEATURES_SHOWN]
        more = ", ..." if len(row.features) > MAX_FEATURES_SHOWN else ""
        features = ", ".join(f"{k}={_number(v) if isinstance(v, float) else v}" for k, v in shown) + more
        rows.add_row(
            cell(row.row), cell(row.prediction_a), cell(row.prediction_b), cell(_number(row.difference)), cell(features)
        )
    return rows


def _rows(count: int) -> str:
    """``1 row`` or ``2,000 rows``.

    >>> _rows(1), _rows(2000)
    ('1 row', '2,000 rows')
    """
    return f"{count:,} row{'' if count == 1 else 's'}"


def _number(value: float | None) -> str | None:
    """A difference shown with 4 significant digits; ``None`` stays ``None`` (shown as ``-``).

    >>> _number(0.000012345), _number(None), _number(0.0)
    ('1.234e-05', None, '0')
    """
    return None if value is None else f"{value:.4g}"
