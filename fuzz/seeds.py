"""Write the seed inputs of each harness into fuzz/corpus/<harness>/seed-*: valid bodies the fuzzer mutates.

Run once after changing a harness's input layout: ``python fuzz/seeds.py``. Inputs the fuzzer found (and the
crashes kept as regression cases) sit next to the seeds under other names and are not touched.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"


def _v2() -> list[bytes]:
    def tensor(name: str, datatype: str, shape: list[int], data: list[object]) -> dict[str, object]:
        return {"name": name, "datatype": datatype, "shape": shape, "data": data}

    def body(*inputs: dict[str, object], **extra: object) -> bytes:
        return json.dumps({"inputs": list(inputs), **extra}).encode()

    mixed = [
        tensor("amount", "FP64", [2], [1.5, 2.0]),
        tensor("hour", "INT64", [2], [3, 4]),
        tensor("channel", "BYTES", [2], ["web", "pos"]),
        tensor("is_foreign", "BOOL", [2], [True, False]),
    ]
    seeds = [
        bytes([0 << 2]) + body(tensor("input-0", "FP32", [1, 4], [[1, 2, 3, 4]])),
        bytes([1 << 2]) + body(tensor("input-0", "FP32", [2, 4], [1, 2, 3, 4, 5, 6, 7, 8.5])),
        bytes([2 << 2]) + body(tensor("input-0", "FP64", [2, 2], [[1.5, 2], [0.5, 3]]), id="r1"),
        bytes([2 << 2]) + body(tensor("a", "FP64", [1], [1.5]), tensor("n", "INT64", [1], [2])),
        bytes([3 << 2]) + body(*mixed, outputs=[{"name": "predict"}, {"name": "predict_proba"}]),
        bytes([4 << 2]) + body(tensor("small", "INT8", [2], [1, -128]), tensor("u", "UINT64", [2], [0, 2**64 - 1])),
        bytes([5 << 2]) + body(tensor("input-0", "INT64", [1, 2, 3], [[[1, 2, 3], [4, 5, 6]]])),
        bytes([6 << 2]) + body(tensor("f", "FP16", [1], [0.5]), tensor("b", "BOOL", [1], [False])),
        bytes([7 << 2]) + body(tensor("when", "BYTES", [1], ["2024-01-01"]), tensor("c", "BYTES", [1], ["x"])),
        bytes([3 << 2]) + body(*mixed, parameters={"binary_data_output": True}),
    ]
    head = json.dumps(
        {
            "inputs": [
                {"name": "input-0", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}},
            ]
        }
    ).encode()
    raw = bytes(16)  # four FP32 zeros
    seeds.append(bytes([1 | 1 << 2]) + len(head).to_bytes(2, "little") + head + raw)
    head = json.dumps(
        {
            "inputs": [
                {"name": "channel", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 7}},
                {"name": "is_foreign", "datatype": "BOOL", "shape": [1], "parameters": {"binary_data_size": 1}},
                {"name": "amount", "datatype": "FP64", "shape": [1], "parameters": {"binary_data_size": 8}},
                {"name": "hour", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}},
            ]
        }
    ).encode()
    raw = b"\x03\x00\x00\x00web" + b"\x01" + bytes(8) + (3).to_bytes(8, "little")
    seeds.append(bytes([1 | 3 << 2]) + len(head).to_bytes(2, "little") + head + raw)
    return seeds


def _tabular() -> list[bytes]:
    row = {"amount": 12.5, "hour": 3, "channel": "web", "is_foreign": False}
    csv = b"amount,hour,channel,is_foreign\n12.5,3,web,False\n7.25,23,pos,True\n"
    seeds = [
        bytes([0 | 0 << 2]) + csv,
        bytes([0 | 1 << 2]) + b"a,b\n1.5,2\n,3e2\n",
        bytes([0 | 2 << 2]) + b"small,u,f\n1,18446744073709551615,1e38\n",
        bytes([0 | 3 << 2]) + b"when,c\n2024-01-01T10:00:00,x\n",
        bytes([0 | 4 << 2]) + b"x0,x1,x2\n1,2,3\n",
    ]
    mlflow = [
        {"dataframe_split": {"columns": list(row), "data": [list(row.values())]}},
        {"dataframe_split": {"data": [list(row.values())], "index": [0]}},
        {"dataframe_records": [row, row]},
        {"instances": [row]},
        {"instances": [[1.5, 2.5]]},
        {"inputs": {"a": [1.5], "b": [2.5]}},
        {"inputs": [[1, 2, 3]], "params": {"predict_method": "predict_proba"}},
    ]
    native = [{"instances": [row]}, {"inputs": {k: [v] for k, v in row.items()}}, {"instances": [[1.5, 2.5]]}]
    for index, payload in enumerate(mlflow):
        seeds.append(bytes([1 | (index % 6) << 2]) + json.dumps(payload).encode())
    for index, payload in enumerate(native):
        seeds.append(bytes([2 + index % 2 | (index % 6) << 2]) + json.dumps(payload).encode())
    return seeds


def _signature_validate() -> list[bytes]:
    generator = random.Random(14)
    return [bytes(generator.randrange(256) for _ in range(size)) for size in (16, 64, 64, 256, 256, 1024)]


def main() -> None:
    """Write every harness's seeds (named by content, so rewriting is idempotent)."""
    for harness, seeds in (("v2_codec", _v2()), ("tabular", _tabular()), ("signature_validate", _signature_validate())):
        folder = CORPUS / harness
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for seed in seeds:
            (folder / f"seed-{hashlib.sha1(seed).hexdigest()[:12]}").write_bytes(seed)


if __name__ == "__main__":
    main()
