"""MicroBatcher: merged calls give each request its own rows' scores, whatever the path a request takes."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from shipyard.scoring.batcher import BatchStats, MicroBatcher, Scores


def _doubling(calls: list[int]) -> Any:
    def score(x: Any) -> Scores:
        array = np.asarray(x, dtype=float)
        calls.append(len(array))
        if np.isnan(array).any():
            raise ValueError("NaN in the input")
        return Scores(array[:, 0] * 2)

    return score


@pytest.mark.parametrize("max_batch_size", [1, 3, 8, 64])
def test_concurrent_requests_of_mixed_sizes_get_their_own_rows(max_batch_size: int) -> None:
    calls: list[int] = []
    batcher = MicroBatcher(_doubling(calls), max_batch_size=max_batch_size)
    sizes = [1, 5, 2, 9, 1, 3, 64, 7]

    async def main() -> list[list[float]]:
        starts = np.cumsum([0, *sizes[:-1]])
        requests = [np.arange(s, s + n, dtype=float).reshape(-1, 1) for s, n in zip(starts, sizes, strict=True)]
        answers = await asyncio.gather(*[batcher.submit(r) for r in requests])
        return [a.predictions.tolist() for a in answers]

    results = asyncio.run(main())
    expected_start = 0
    for size, result in zip(sizes, results, strict=True):
        assert result == [2.0 * v for v in range(expected_start, expected_start + size)]
        expected_start += size
    assert sum(calls) == sum(sizes)
    batcher.close()


def test_a_failing_request_fails_alone_and_a_full_request_on_an_idle_fast_model_is_scored_at_once() -> None:
    calls: list[int] = []
    seen: list[BatchStats] = []
    batcher = MicroBatcher(_doubling(calls), max_batch_size=4, observer=seen.append)
    batcher.record_call(0.0001)  # measured fast: calls run on the event loop

    async def main() -> tuple[Any, ...]:
        good = batcher.submit(np.ones((4, 1)))  # fills a batch alone while idle: scored inside submit
        assert good.done()
        bad = batcher.submit(np.full((4, 1), np.nan))
        assert bad.done()
        small = [batcher.submit(np.full((1, 1), float(i))) for i in range(3)]
        broken = batcher.submit(np.array([[np.nan]]))
        return await asyncio.gather(good, bad, *small, broken, return_exceptions=True)

    good, bad, *small, broken = asyncio.run(main())
    assert good.predictions.tolist() == [2.0] * 4
    assert isinstance(bad, ValueError) and isinstance(broken, ValueError)
    assert [s.predictions.tolist() for s in small] == [[0.0], [2.0], [4.0]]
    assert seen[0].rows == 4 and seen[0].queue_wait_seconds == 0.0
    batcher.close()
