"""schemathesis against the server's own OpenAPI document: every operation, auth on, no 5xx for any request.

The server runs in this process (schemathesis' ASGI transport runs its start-up, so the model is loaded) with
auth required and a valid admin key on every request. Path parameters are drawn by schemathesis, and half
of the time replaced with the served model's name and version, so the model routes reach the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (a dev extra)")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.python.asgi import shutdown_lifespans  # noqa: E402

import shipyard  # noqa: E402
from shipyard.serving.app import create_app  # noqa: E402
from shipyard.serving.settings import ServeSettings  # noqa: E402

EXAMPLES = int(os.environ.get("SHIPYARD_SCHEMATHESIS_EXAMPLES", "25"))  # per operation: well under a minute in all
MODEL = "toy"


@pytest.fixture
def app_with_key(home: Path) -> Iterator[tuple[Any, str]]:
    """The server app (auth on) over a registry with one served model (a small classifier), and an admin key."""
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame({"amount": [1.0, 2.5, 3.0, 4.5, 0.5, 6.0], "merchant_id": [1, 2, 3, 4, 5, 6]})  # as documented
    y = pd.Series([0, 0, 1, 1, 0, 1], name="label")
    shipyard.register(LogisticRegression().fit(X, y), MODEL, X=X, y=y)
    shipyard.set_alias(MODEL, "production", 1)
    service = shipyard.connect()
    _, key = service.create_key("fuzzer", ["admin"])
    app = create_app(ServeSettings(auth=True), service)
    try:
        yield app, key
    finally:
        shutdown_lifespans()  # the start-up schemathesis ran: stop the server's tasks before the registry goes


def _with_served_names(case: Any, served: bool) -> Any:
    if served and case.path_parameters:
        if "name" in case.path_parameters:
            case.path_parameters["name"] = MODEL
        if "version" in case.path_parameters:
            case.path_parameters["version"] = "1"
    return case


def test_no_operation_answers_a_server_error(app_with_key: tuple[Any, str]) -> None:
    app, key = app_with_key
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]  # every documented route, not a few
    headers = {"Authorization": f"Bearer {key}"}
    failures: list[str] = []
    for operation in operations:
        drawn = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),  # bodies the document allows
            operation.as_strategy(GenerationMode.NEGATIVE),  # and bodies, parameters and types it does not
            *schema.get_strategies_from_examples(operation),  # the documented examples
        )
        strategy = st.tuples(drawn, st.booleans()).map(lambda pair: _with_served_names(*pair))

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=os.environ.get("CI") == "true",
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def check(case: Any) -> None:
            response = case.call(headers=headers)
            assert response.status_code != 401, f"the admin key was refused: {response.text[:200]}"
            case.validate_response(response, checks=[not_a_server_error])

        try:
            check()
        except AssertionError as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
        except Exception as exc:  # schemathesis reports a failed check as its own exception type
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
