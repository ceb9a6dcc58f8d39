"""A small Python client for a running ``shipyard serve``: ``Client(url, api_key=...).predict(...)``.

Errors come back as the same :mod:`shipyard.errors` classes the server raised (by HTTP status), with
the server's message, so ``except shipyard.errors.SchemaError`` works across the wire.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import httpx

from shipyard import errors

_BY_STATUS: dict[int, type[errors.ShipyardError]] = {
    400: errors.InvalidInput,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    503: errors.ModelNotReady,
    504: errors.RequestTimeout,
}


@dataclass(frozen=True)
class PredictResult:
    """A prediction answer: which version answered, its predictions and (classifiers) probabilities."""

    model: str
    version: int
    predictions: list[Any]
    probabilities: list[list[float]] | None
    classes: list[Any] | None
    request_id: str


@dataclass(frozen=True)
class FeedbackResult:
    """A feedback answer: labels stored (durably, before the answer).

    ``first_offset`` and ``last_offset`` are the events' offsets in the stream of an online model; they are
    ``None`` for a model that does not learn online (its labels only join its logged predictions).
    """

    accepted: int
    first_offset: int | None
    last_offset: int | None
    request_id: str


def _json_value(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def _rows(rows: Any) -> dict[str, Any]:
    """The native request body for ``rows``: records, a dict of columns, a DataFrame or rows of values."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        return {"instances": [{str(k): _json_value(v) for k, v in r.items()} for r in rows.to_dict("records")]}
    if isinstance(rows, Mapping):
        return {"inputs": {str(k): [_json_value(v) for v in col] for k, col in rows.items()}}
    if isinstance(rows, Sequence) and not isinstance(rows, str):
        out: list[Any] = []
        for row in rows:
            if isinstance(row, Mapping):
                out.append({str(k): _json_value(v) for k, v in row.items()})
            else:
                out.append([_json_value(v) for v in row])
        return {"instances": out}
    raise errors.InvalidInput(f"rows must be records, a dict of columns or a DataFrame, got {type(rows).__name__}")


class Client:
    """Talks to a shipyard server's native protocol::

        client = Client("http://127.0.0.1:8000", api_key="sy_...")
        client.predict("fraud", [{"amount": 12.5, "hour": 3}])      # [0]
    """

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            answer = self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise errors.ServerUnavailable(f"cannot reach the shipyard server at {self.url}: {exc}") from None
        if answer.status_code >= 400:
            try:
                message = answer.json().get("error") or answer.text
            except ValueError:
                message = answer.text or answer.reason_phrase
            if answer.status_code == 422:
                raise errors.SchemaError([str(message).removeprefix("input does not match the model signature: ")])
            cls = _BY_STATUS.get(answer.status_code, errors.ShipyardError)
            error = errors.ShipyardError.__new__(cls)
            errors.ShipyardError.__init__(error, str(message))
            raise error
        return answer.json()

    def infer(self, model: str, rows: Any, *, version: int | None = None) -> PredictResult:
        """The full answer for ``rows`` from ``model`` (its served version, or ``version``)."""
        path = f"/v1/models/{model}/predict" if version is None else f"/v1/models/{model}/versions/{version}/predict"
        data = self._call("POST", path, _rows(rows))
        return PredictResult(
            model=data["model"],
            version=int(data["version"]),
            predictions=data["predictions"],
            probabilities=data.get("probabilities"),
            classes=data.get("classes"),
            request_id=data.get("request_id", ""),
        )

    def predict(self, model: str, rows: Any, *, version: int | None = None) -> list[Any]:
        """One prediction per row."""
        return self.infer(model, rows, version=version).predictions

    def predict_proba(self, model: str, rows: Any, *, version: int | None = None) -> list[list[float]]:
        """Class probabilities per row (classifiers only)."""
        result = self.infer(model, rows, version=version)
        if result.probabilities is None:
            raise errors.InvalidInput(f"model {model!r} does not give probabilities")
        return result.probabilities

    def feedback(
        self,
        model: str,
        *,
        request_id: str | None = None,
        label: Any = None,
        rows: Any = None,
        labels: Sequence[Any] | None = None,
    ) -> FeedbackResult:
        """Send true labels to a served model; returns once the server has stored them.

        An online model learns from them; for any model they join its logged predictions (live accuracy).

        Either ``request_id`` and ``label`` (the label of one earlier prediction, by the ``request_id`` of
        its answer), ``labels`` alone as ``(request_id, label)`` pairs, or ``rows`` with one label per row in
        ``labels``::

            result = client.infer("fraud", [row])
            client.feedback("fraud", request_id=result.request_id, label=1)
            client.feedback("fraud", rows=[row1, row2], labels=[0, 1])
        """
        body: dict[str, Any]
        if request_id is not None:
            if label is None or rows is not None or labels is not None:
                raise errors.InvalidInput("give request_id with label, and neither rows nor labels")
            body = {"request_id": request_id, "label": _json_value(label)}
        elif rows is not None:
            if labels is None or label is not None:
                raise errors.InvalidInput("give rows with labels (one per row)")
            body = {**_rows(rows), "labels": [_json_value(v) for v in labels]}
        elif labels is not None:
            pairs = []
            for pair in labels:
                rid, value = (pair["request_id"], pair["label"]) if isinstance(pair, Mapping) else pair
                pairs.append({"request_id": str(rid), "label": _json_value(value)})
            body = {"labels": pairs}
        else:
            raise errors.InvalidInput(
                "give request_id and label, labels as (request_id, label) pairs, or rows and labels"
            )
        data = self._call("POST", f"/v1/models/{model}/feedback", body)
        return FeedbackResult(
            accepted=int(data["accepted"]),
            first_offset=None if data.get("first_offset") is None else int(data["first_offset"]),
            last_offset=None if data.get("last_offset") is None else int(data["last_offset"]),
            request_id=data.get("request_id", ""),
        )

    def models(self) -> list[dict[str, Any]]:
        """The models the server serves."""
        return list(self._call("GET", "/v1/models")["models"])

    def ready(self) -> bool:
        """Whether every served model is loaded and warmed up."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False
