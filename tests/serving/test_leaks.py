"""Error answers carry no connection string, file path or stack, even while the registry database is down.

In process (httpx over ASGI), on a real SQLite registry that is taken away while the server runs: its folder is
replaced by a file, and the pooled connections are dropped, as an outage drops them.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from tests.serving.inprocess import call

import shipyard
from shipyard.serving.app import create_app
from shipyard.serving.settings import ServeSettings


def test_a_registry_outage_answers_503_without_the_database_url(
    home: Path, numeric_model: tuple[object, Any], caplog: pytest.LogCaptureFixture
) -> None:
    _clf, X = numeric_model
    shipyard.register(_clf, "iris", X=X)  # version 2: loaded only on demand, so asking for it needs the registry
    service = shipyard.connect()
    open_app = create_app(ServeSettings(auth=False), service, preload=True)  # serves iris version 1
    guarded_app = create_app(ServeSettings(auth=True), service)

    shutil.rmtree(home)
    home.write_text("not a folder")  # the registry file cannot be opened, nor its folder made again
    service.store.close()  # the outage drops the pooled connections

    row = {k: float(v) for k, v in X.iloc[0].items()}
    key = "sy_0a1b2c3d_" + "s" * 43
    caplog.set_level(logging.ERROR, logger="shipyard.serving")
    answers = call(
        open_app,
        [
            ("GET", "/v1/models/iris", {"x-request-id": "leak-1"}, None),  # FastAPI route
            ("POST", "/v1/models/iris/versions/2/predict", {"x-request-id": "leak-2"}, {"instances": [row]}),  # raw
            ("GET", "/v2/models/iris", {"x-request-id": "leak-3"}, None),
            ("GET", "/v2/models/iris/versions/2/ready", {"x-request-id": "leak-4"}, None),
        ],
    ) + call(guarded_app, [("GET", "/v1/models", {"Authorization": f"Bearer {key}", "x-request-id": "leak-5"}, None)])

    for number, answer in enumerate(answers, 1):
        assert answer.status_code == 503, answer.text
        text = answer.text
        for secret in (str(home), "sqlite", "registry.db", "Traceback", 'File "', "unable to open"):
            assert secret not in text, (secret, text)
        assert "registry is unavailable" in text and f"error id leak-{number}" in text, text
    assert "cannot check the API key now" in answers[-1].text
    # ... while the server log has the detail, under the same id
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for number in range(1, 6):
        assert f"request leak-{number}" in logged
    assert "registry.db" in logged
    service.store.close()
