"""``shipyard logs``: the prediction log of a model, as DuckDB SQL or as its last rows.

It reads the log where ``shipyard serve`` writes it: ``$SHIPYARD_HOME/logs``, or what the ``logging``
section of the ``--config serve.yaml`` says (another folder, or the PostgreSQL backend).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shipyard.cli.output import cell, console, say, table
from shipyard.errors import NotFound

if TYPE_CHECKING:
    from shipyard.monitoring.logs import PredictionLog

app = typer.Typer(
    help="Query the prediction log: every prediction a server answered, with its inputs and labels.",
    no_args_is_help=True,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="serve.yaml whose logging section says where the log is (as for serve)."),
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Only rows since then: a duration (30m, 1h, 7d) or an ISO time.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the rows as a JSON array of objects.")]


def plain(value: Any) -> Any:
    """``value`` as JSON can hold it: times in ISO form, arrays as lists, NaN as ``None``.

    >>> plain({"ts": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "p": (0.5, float("nan"))})
    {'ts': '2026-01-01T00:00:00+00:00', 'p': [0.5, None]}
    """
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):  # NumPy arrays and scalars
        return plain(value.tolist())
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(v) for v in value]
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        return value.to_pydatetime().isoformat()
    return value


def shown(value: Any) -> str | None:
    """A value as one short table cell (``None`` for missing).

    >>> shown([0.123456, 0.876544]), shown({"a": 1}), shown(float("nan"))
    ('[0.1235, 0.8765]', '{"a": 1}', None)
    """
    value = plain(value)
    if value is None:
        return None
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def print_rows(rows: Sequence[Mapping[Any, Any]], columns: list[str], *, title: str, as_json: bool) -> None:
    """Rows as a Rich table, or as one JSON array."""
    if as_json:
        typer.echo(json.dumps([plain(row) for row in rows]))
        return
    result = table(*columns, title=title)
    for row in rows:
        result.add_row(*(cell(shown(row.get(c))) for c in columns))
    console().print(result)


def open_log(config: Path | None) -> PredictionLog:
    """The prediction log ``shipyard serve`` (with ``config``) writes."""
    from shipyard.config import Settings
    from shipyard.monitoring.logs import PredictionLog

    return PredictionLog.from_settings(Settings(), config)


def _check_model(log: PredictionLog, name: str) -> None:
    models = log.models()
    if name not in models:
        known = ", ".join(models) if models else "none: serve a model and send it predictions first"
        raise NotFound(f"no prediction log for model {name!r} in {log}; models with logs: {known}")


@app.command("query")
def query(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Model name, e.g. fraud.")],
    sql: Annotated[
        str,
        typer.Option(
            "--sql",
            help="DuckDB SQL over the views predictions (request_id, ts, version, route, latency_ms, input, "
            "prediction, probabilities) and labels (request_id, ts, label).",
        ),
    ],
    since: SinceOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run SQL over NAME's logged predictions and labels, e.g. --sql "select version, count(*) from predictions
    group by 1"."""
    from shipyard.monitoring.logs import parse_since

    log = open_log(config)
    result = log.query(name, sql, since=parse_since(since) if since else None)
    print_rows(result.to_pylist(), list(result.column_names), title=f"{name}: {result.num_rows} rows", as_json=as_json)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Model name, e.g. fraud.")],
    last: Annotated[int, typer.Option("--last", min=1, help="How many of the newest predictions.")] = 20,
    since: SinceOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """The newest logged predictions of NAME, oldest first: time, request id, version, answer and inputs."""
    from shipyard.monitoring.logs import parse_since

    log = open_log(config)
    _check_model(log, name)
    frame = log.predictions(name, last=last, since=parse_since(since) if since else None)
    if frame.empty:
        say(f"{name}: no logged predictions" + (f" since {since}" if since else ""))
        return
    columns = [c for c in frame.columns if c not in ("model",)]
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    print_rows(rows, columns, title=f"{name}: the last {len(rows)} predictions", as_json=as_json)
