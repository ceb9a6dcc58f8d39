"""What the fuzzers found, asked of the real server: each is the caller's error (4xx naming it), not a 500.

The inputs themselves are kept in fuzz/corpus/<harness>/crash-* and replayed by test_atheris_short.py; these
tests check the answer a client gets.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.serving.inprocess import post_json, serving

import shipyard


@pytest.fixture
def toy(home: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame({"amount": [1.0, 2.5, 3.0, 4.5], "hour": [1, 2, 3, 4]})
    y = pd.Series([0, 0, 1, 1], name="label")
    shipyard.register(LogisticRegression().fit(X, y), "toy", X=X, y=y)
    shipyard.set_alias("toy", "production", 1)
    shipyard.register(LogisticRegression().fit(X.to_numpy(), y), "raw")  # no X given: no signature
    shipyard.set_alias("raw", "production", 1)


def _infer(**tensor: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 2], "data": [1.0, 2.0], **tensor}]}


CASES = [
    # V2: a datatype that is not a string was a TypeError (500)
    ("/v2/models/toy/infer", _infer(datatype=[2]), 400, "unknown or unsupported datatype [2]"),
    # V2, a model without a signature: an empty tensor with a dimension numpy cannot hold, or with more dimensions
    # than numpy has, was a ValueError (500)
    ("/v2/models/raw/infer", _infer(shape=[1, 0, 2**62, 2**62], data=[]), 400, "is too large"),
    ("/v2/models/raw/infer", _infer(shape=[1] * 70, data=[1.0]), 400, "at most 32 dimensions"),
    ("/v2/models/toy/infer", _infer(shape=[1] * 70, data=[1.0]), 400, "at most 32 dimensions"),
    # native columns: a column sent as null was a TypeError, answered as "the model could not score these rows"
    ("/v1/models/toy/predict", {"inputs": {"amount": [1.0], "hour": None}}, 422, "column 'hour': expected int64"),
    ("/v1/models/toy/predict", {"inputs": {"amount": 1.5, "hour": 2}}, 200, '"predictions"'),  # one row of scalars
]


def test_fuzz_findings_are_answered_as_the_callers_error(toy: None) -> None:
    async def scenario() -> list[tuple[int, str]]:
        async with serving() as client:
            return [((a := await post_json(client, path, body)).status_code, a.text) for path, body, _, _ in CASES]

    answers = asyncio.run(scenario())
    wrong = [
        f"{path} {body}: {got} {answer[:300]}"
        for (path, body, status, text), (got, answer) in zip(CASES, answers, strict=True)
        if got != status or text not in answer
    ]
    assert not wrong, "\n".join(wrong)
