"""``python -m shipyard.online NAME [--snapshot-every N ...]``: run the learner of one model until SIGTERM/Ctrl-C.

The registry is the one the environment names (``SHIPYARD_HOME`` or ``SHIPYARD_REGISTRY_URL``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from shipyard.online.events import OnlineSettings


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options into :class:`OnlineSettings` and run a :class:`~shipyard.online.Learner`."""
    import shipyard
    from shipyard.online.learner import Learner

    parser = argparse.ArgumentParser(prog="python -m shipyard.online", description="Run a model's online learner.")
    parser.add_argument("name")
    parser.add_argument("--holder", default=None, help="learner identity (default: host:pid:random)")
    for f in fields(OnlineSettings):
        kind: Any = int if f.type in ("int", int) else float
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    args = parser.parse_args(argv)
    settings = OnlineSettings(**{f.name: getattr(args, f.name) for f in fields(OnlineSettings)})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Learner(shipyard.connect(), args.name, settings, holder=args.holder).run(stop)


if __name__ == "__main__":  # pragma: no cover
    main()
