"""``shipyard serve`` on a taken port: one line naming the port and its holder, no "ready" (issue 15, item 7)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from tests.serving.conftest import SHIPYARD, fraud_model  # noqa: F401  (the fixture: fraud v1, v2)


@pytest.mark.usefixtures("fraud_model")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line_and_no_ready(home: Path, workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [SHIPYARD, "serve", "fraud", "--port", str(port), "--workers", workers, "--log-level", "warning"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        )
    assert result.returncode != 0
    assert "ready" not in result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: port {port} on 127.0.0.1 is in use (by pid {os.getpid()}"), lines[0]
    assert "--port" in lines[0]
