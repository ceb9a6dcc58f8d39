"""Options that ``predict`` and ``batch score`` share, declared once so both commands say the same thing."""

from __future__ import annotations

from typing import Annotated

import typer

StrictFlag = Annotated[
    bool, typer.Option("--strict", help="Stop at the first row that does not fit the model (nothing is written).")
]
AllowExtraFlag = Annotated[
    bool,
    typer.Option(
        "--allow-extra", help="Accepted for scripts: input columns the model does not use are always ignored."
    ),
]
TrustTypeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--trust-type", metavar="TYPE", help="Extra type the stored model may contain, e.g. mylib.Scaler (repeatable)."
    ),
]
