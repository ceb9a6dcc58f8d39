"""Progress of a batch job: a Rich bar with rows/s and ETA on a terminal, notes to the log otherwise."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, Task, TaskID
    from rich.text import Text

log = logging.getLogger("shipyard.batch")


def _rate_column() -> type:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Rows per second, over Rich's recent-speed window."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-- rows/s" if speed is None else f"{speed:,.0f} rows/s", style="progress.data.speed")

    return RateColumn


class Reporter:
    """Shows a job's progress when ``console`` is given and is a terminal; notes go to it, or to the log.

    >>> with Reporter(None, "scoring") as reporter:
    ...     reporter.start(total=100, done=0)
    ...     reporter.advance(100)
    """

    def __init__(self, console: Console | None, label: str) -> None:
        self.console = console
        self.label = label
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def note(self, text: str) -> None:
        """A one-line remark about the job (what was resumed, what was cleaned up)."""
        if self.console is not None:
            self.console.print(text, markup=False, soft_wrap=True, highlight=False)
        else:
            log.info(text)

    def start(self, total: int | None, done: int) -> None:
        """Begin the bar at ``done`` of ``total`` rows (``None`` when the input size is unknown)."""
        if self.console is None or not self.console.is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn(self.label, markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            _rate_column()(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=total, completed=done)

    def advance(self, rows: int) -> None:
        """``rows`` more rows are done."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, rows)

    def close(self) -> None:
        """Remove the bar."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
