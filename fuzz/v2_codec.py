"""Fuzz the Open Inference Protocol (V2) request decoder: body bytes to typed tensors to model rows.

Input layout: byte 0 chooses the body kind (bit 0: binary tensor data follows the JSON; bit 1: the
``Inference-Header-Content-Length`` header is junk text instead of a number) and the signature the tensors
are mapped onto (bits 2-4); with binary data, bytes 1-2 are the header length (little-endian); the rest is
the body. Each decoded request goes on as the server takes it: ``v2_signature.features`` for the chosen
signature, then ``Signature.validate``, as the data plane does before scoring.

Run: ``python fuzz/v2_codec.py fuzz/corpus/v2_codec`` (see fuzz/README.md).
"""

from __future__ import annotations

import atheris
from support import guarded, main

with atheris.instrument_imports(include=["shipyard"]):
    import numpy as np
    import pandas as pd

    from shipyard.serving.v2_codec import check_requested_outputs, parse_request
    from shipyard.serving.v2_signature import features
    from shipyard.signature import Signature

SIGNATURES: list[Signature | None] = [
    None,  # a model registered without a signature
    Signature.infer(np.zeros((2, 4), dtype="float32")),  # a tensor: input-0 [-1, 4] FP32
    Signature.infer(pd.DataFrame({"a": [1.5], "n": [2]})),  # all numeric: input-0 [-1, 2] or a, n
    Signature.infer(
        pd.DataFrame({"amount": [1.5], "hour": [3], "channel": ["web"], "is_foreign": [False]})
    ),  # one input per column
    Signature.infer(pd.DataFrame({"small": np.array([1], dtype="int8"), "u": np.array([1], dtype="uint64")})),
    Signature.infer(np.zeros((2, 2, 3), dtype="int64")),  # a 3-D tensor
    Signature.infer(pd.DataFrame({"f": np.array([1.0], dtype="float16"), "b": [True]})),
    Signature.infer(pd.DataFrame({"when": pd.to_datetime(["2024-01-01"]), "c": pd.Categorical(["x"])})),
]


def test_one_input(data: bytes) -> None:
    """Decode one request body and map it onto a signature; only 4xx shipyard errors may come out."""
    if not data:
        return
    mode, data = data[0], data[1:]
    header: str | None = None
    if mode & 1:
        if len(data) < 2:
            return
        length, data = int.from_bytes(data[:2], "little"), data[2:]
        header = "0x10" if mode & 2 else str(length)
    request = guarded(parse_request, data, header)
    if request is None:
        return
    guarded(check_requested_outputs, request, ["predict", "predict_proba"])
    signature = SIGNATURES[(mode >> 2) % len(SIGNATURES)]
    rows = guarded(features, signature, request.inputs)
    if rows is None or signature is None:
        return
    guarded(signature.validate, rows)


if __name__ == "__main__":
    main(test_one_input)
