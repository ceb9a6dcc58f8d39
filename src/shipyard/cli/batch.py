"""``shipyard batch score``: score a table of any size into a file or a SQL table (see :mod:`shipyard.batch`).

The work is :func:`shipyard.batch.score`; this module turns options into its arguments, shows its
progress bar on stderr and prints a summary line (or, with ``--json``, the result as JSON on stdout).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer

from shipyard.cli.common import get_service
from shipyard.cli.options import AllowExtraFlag, StrictFlag, TrustTypeOption
from shipyard.cli.output import err_console, say
from shipyard.errors import InvalidInput, ShipyardError

app = typer.Typer(
    help="Score large tables with a registered model, in chunks, locally or on a Dask cluster.",
    no_args_is_help=True,
)


@app.command("score")
def score(
    ref: Annotated[
        str, typer.Argument(metavar="REF", help="fraud (production alias, else latest), fraud:3 or fraud@staging.")
    ],
    input_data: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            metavar="DATA",
            help="CSV or Parquet file, folder or glob, or a database URL such as sqlite:///tx.db?table=tx.",
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            metavar="OUT",
            help="A .parquet or .csv file (replaced when the job is done), or a database URL with ?table=NAME.",
        ),
    ],
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column",
            metavar="COLUMN",
            help="Input column that identifies each row, copied first into the output "
            "(default: a 'row' column, the 0-based input row number).",
        ),
    ] = None,
    keep: Annotated[
        str | None, typer.Option("--keep", metavar="COL,...", help="More input columns to copy into the output.")
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            metavar="COL,...",
            help="For a model trained on an array: its feature columns in training order (default: the numeric ones).",
        ),
    ] = None,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1, metavar="ROWS", help="Rows read, checked and scored at a time.")
    ] = 100_000,
    engine: Annotated[
        str, typer.Option("--engine", metavar="local|dask", help="local: threads on this machine; dask: a cluster.")
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786 (default: a local cluster)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, metavar="N", help="Threads (local) or worker processes (local cluster)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run of the same job, skipping finished chunks.")
    ] = False,
    strict: StrictFlag = False,
    rejects: Annotated[
        str | None,
        typer.Option(
            "--rejects",
            metavar="PATH",
            help="Where rejected rows go (default: <output stem>.rejects.parquet beside a file output; for a SQL "
            "output <database>.<table>.rejects.parquet beside a SQLite file, else here). A SQL job without "
            "--if-exists replace or --resume never overwrites an existing rejects file.",
        ),
    ] = None,
    if_exists: Annotated[
        str,
        typer.Option(
            "--if-exists", metavar="fail|append|replace", help="SQL output: what to do with an existing table."
        ),
    ] = "fail",
    scored_at: Annotated[
        str | None,
        typer.Option(
            "--scored-at", metavar="TIME", help="ISO time for the scored_at column (default: when the job starts)."
        ),
    ] = None,
    allow_extra: AllowExtraFlag = False,
    trust_type: TrustTypeOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Score DATA with a registered model into OUT: ids and kept columns, prediction, probabilities, model,
    version and time.

    Memory stays bounded whatever the input size. Rows that do not fit the model's signature go to a
    rejects file with the reason (or stop the job with --strict); CSV cells are converted to the
    model's types one by one, so a row with a cell that does not convert is rejected, not the file.
    The output appears only when every row is scored; after an interruption, run the same command
    with --resume.
    """
    from shipyard.batch import score as run_job
    from shipyard.batch import tempfiles

    del allow_extra  # only the model's columns, the id and the kept ones are read

    tempfiles.remove_on_signals()  # SIGTERM: the output's temporary file goes; finished chunks stay for --resume
    stamp = _parse_time(scored_at) if scored_at is not None else None
    try:
        result = run_job(
            ref,
            input_data,
            output,
            id_column=id_column,
            keep=keep or (),
            columns=columns,
            chunk_rows=chunk_rows,
            engine=engine,  # type: ignore[arg-type]  # checked by score()
            scheduler=scheduler,
            workers=workers,
            resume=resume,
            strict=strict,
            rejects=rejects,
            if_exists=if_exists,  # type: ignore[arg-type]  # checked by score()
            scored_at=stamp,
            trusted_types=tuple(trust_type or ()),
            progress=err_console(),
            service=get_service(),
        )
    except KeyboardInterrupt:
        raise ShipyardError(
            "interrupted; the chunks scored so far are kept: run the same command with --resume to continue"
        ) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    resumed = f", {result.resumed_chunks:,} of {result.chunks:,} chunks resumed" if result.resumed_chunks else ""
    say(
        f"Scored {result.rows:,} rows with {result.model} in {result.seconds:.2f} s "
        f"({result.rows_per_second:,.0f} rows/s{resumed}) -> {result.output}"
    )
    if result.rejected:
        rows = "row that does" if result.rejected == 1 else "rows that do"
        say(f"Rejected {result.rejected:,} {rows} not fit the model -> {result.rejects}")


def _parse_time(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC.

    >>> _parse_time("2024-05-01T12:00:00Z").isoformat()
    '2024-05-01T12:00:00+00:00'
    """
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--scored-at expects an ISO time such as 2024-05-01T12:00:00Z, got {text!r}") from None
