"""What every harness shares: which exceptions are the caller's error (fine) and which are a crash.

A harness feeds untrusted bytes to one parser of shipyard. Any exception that is not one of shipyard's own
errors with a 4xx status (:class:`shipyard.errors.ShipyardError`) is a crash: in the server it would be a 500,
or a 4xx that blames the model for the caller's input. NumPy's overflow and invalid-value warnings are crashes
too: they mean a value silently became ``inf`` or garbage instead of being refused.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import atheris

with atheris.instrument_imports(include=["shipyard"]):
    from shipyard.errors import ShipyardError


def expected(exc: BaseException) -> bool:
    """Whether ``exc`` is an error shipyard means to answer a caller with (a 4xx of its own error tree)."""
    return isinstance(exc, ShipyardError) and 400 <= int(exc.status) < 500


def guarded(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``; a 4xx shipyard error gives ``None``, anything else propagates (a crash)."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:
        if expected(exc):
            return None
        raise


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Run ``test_one_input`` under atheris with libFuzzer's command line (``sys.argv``)."""
    warnings.simplefilter("ignore", UserWarning)  # pandas guessing date formats: noise, not a fault
    warnings.simplefilter("error", RuntimeWarning)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
