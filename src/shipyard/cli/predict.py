"""``shipyard predict``: score one CSV or Parquet file; a front end of the batch engine (:mod:`shipyard.batch`).

``predict`` is ``shipyard batch score`` with the defaults a single file wants: every input column is
copied into the output (``--no-keep-columns`` copies none), and the summary is the same. Rows that do
not fit the model go to ``<output stem>.rejects.parquet`` with the reason and their row number, exactly
as in ``batch score``; the rest are scored. The output appears only when every row is done (a hidden
temporary file renamed into place), so a failure never leaves a half-written output behind.
"""

from __future__ import annotations

import shutil
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from shipyard.cli.common import get_service
from shipyard.cli.files import check_readable, table_format
from shipyard.cli.options import AllowExtraFlag, StrictFlag, TrustTypeOption
from shipyard.cli.output import err_console, say
from shipyard.errors import InvalidInput, ShipyardError


def predict(
    ref: Annotated[
        str, typer.Argument(metavar="REF", help="fraud (production alias, else latest), fraud:3 or fraud@staging.")
    ],
    input_path: Annotated[
        Path, typer.Option("--input", "-i", metavar="DATA", help="CSV or Parquet file of rows to score.")
    ],
    output_path: Annotated[
        Path,
        typer.Option(
            "--output", "-o", metavar="OUT", help="Where to write the scores: .csv or .parquet (replaced if present)."
        ),
    ],
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1, metavar="ROWS", help="Rows read, checked and scored at a time.")
    ] = 50_000,
    allow_extra: AllowExtraFlag = False,
    keep_columns: Annotated[
        bool, typer.Option("--keep-columns/--no-keep-columns", help="Copy the input columns into the output.")
    ] = True,
    rejects: Annotated[
        str | None,
        typer.Option(
            "--rejects", metavar="PATH", help="Where rejected rows go (default: <output stem>.rejects.parquet)."
        ),
    ] = None,
    strict: StrictFlag = False,
    trust_type: TrustTypeOption = None,
) -> None:
    """Score a CSV or Parquet file with a registered model (the batch engine, one file).

    The output has 'row' (the 0-based input row number), the input columns (unless --no-keep-columns),
    'prediction', 'proba_<class>' per class for classifiers, 'model', 'model_version' and 'scored_at'.
    Rows that do not fit the model go to a rejects file with the reason, as in 'shipyard batch score'.
    """
    del allow_extra  # the batch engine reads only the model's columns and the kept ones
    check_readable(input_path)
    table_format(output_path, "output")
    from shipyard.batch import score as run_job  # here: the package imports pyarrow, too slow for every CLI start
    from shipyard.batch import tempfiles
    from shipyard.batch.run import open_input

    tempfiles.remove_on_signals()
    keep = open_input(input_path).column_names if keep_columns else []
    cleanup = _StagingCleanup(output_path)
    try:
        result = run_job(
            ref,
            input_path,
            output_path,
            keep=keep,
            chunk_rows=chunk_rows,
            strict=strict,
            rejects=rejects,
            trusted_types=tuple(trust_type or ()),
            progress=err_console(),
            service=get_service(),
        )
    except KeyboardInterrupt:
        cleanup.run()
        raise ShipyardError("interrupted; nothing was written") from None
    except InvalidInput as exc:
        cleanup.run()
        if "has the name of an output column" in exc.message and keep_columns:
            raise InvalidInput(f"{exc.message}; or pass --no-keep-columns to write only the scores") from None
        raise
    except BaseException:
        cleanup.run()
        raise
    finally:
        cleanup.unhook()
    say(
        f"Scored {result.rows:,} rows with {result.model} in {result.seconds:.2f} s "
        f"({result.rows_per_second:,.0f} rows/s) -> {result.output}"
    )
    if result.rejected:
        rows = "row that does" if result.rejected == 1 else "rows that do"
        say(f"Rejected {result.rejected:,} {rows} not fit the model -> {result.rejects}")


class _StagingCleanup:
    """Removes the batch staging folders this run creates beside the output, on errors and on SIGTERM/SIGHUP.

    ``predict`` has no ``--resume``: finished chunks of an interrupted run are of no use, so nothing
    of them is left behind (``batch score`` keeps them for ``--resume``).
    """

    _SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self, output: Path) -> None:
        self.output = output.absolute()
        self.before = set(self._folders())
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return  # handlers can only be set there
        for number in self._SIGNALS:
            handler = signal.getsignal(number)
            if handler is signal.SIG_IGN:
                continue
            self.previous[number] = handler
            signal.signal(number, self._on_signal)

    def _folders(self) -> list[Path]:
        return list(self.output.parent.glob(f".{self.output.name}.*.parts"))

    def run(self) -> None:
        """Remove the staging folders that were not there when this run started."""
        for folder in set(self._folders()) - self.before:
            shutil.rmtree(folder, ignore_errors=True)

    def unhook(self) -> None:
        """Put the signal handlers back."""
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        self.run()
        previous = self.previous.get(number, signal.SIG_DFL)
        self.unhook()
        if callable(previous):
            previous(number, frame)
            return
        signal.signal(number, signal.SIG_DFL)
        signal.raise_signal(number)
