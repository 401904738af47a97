"""The adaptive batcher behind `/score`: batches grow with load, answers keep order, errors stay in their batch."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serving.batching import Batcher


def run(coro):
    return asyncio.run(coro)


def test_an_idle_batcher_scores_a_lone_job_at_once():
    seen: list[list[int]] = []
    batcher = Batcher(lambda jobs: seen.append(jobs) or [j * 10 for j in jobs], max_batch=8)

    async def one():
        start = time.perf_counter()
        result = await batcher(4)
        return result, time.perf_counter() - start

    result, waited = run(one())
    assert result == 40 and seen == [[4]]
    assert waited < 0.5  # no batching window to sit out (a generous bound: a thread hop, not a timer)


def test_jobs_arriving_while_a_batch_scores_go_together_in_order():
    seen: list[list[int]] = []
    release = threading.Event()

    def score(jobs: list[int]) -> list[int]:
        seen.append(list(jobs))
        if len(seen) == 1:
            release.wait(5)  # hold the first batch while the others queue up
        return [j * 10 for j in jobs]

    batcher = Batcher(score, max_batch=4)

    async def many():
        first = asyncio.create_task(batcher(0))
        await asyncio.sleep(0.05)  # the first batch is now being scored
        rest = [asyncio.create_task(batcher(i)) for i in range(1, 7)]
        await asyncio.sleep(0.05)
        release.set()
        return await first, await asyncio.gather(*rest)

    first, rest = run(many())
    assert first == 0 and rest == [10, 20, 30, 40, 50, 60]  # every caller gets its own answer
    assert seen == [[0], [1, 2, 3, 4], [5, 6]]  # queued jobs batched, never more than max_batch


def test_a_failing_batch_fails_its_callers_and_the_next_batch_still_runs():
    def score(jobs: list[int]) -> list[int]:
        if -1 in jobs:
            raise ValueError("cannot score -1")
        return jobs

    batcher = Batcher(score, max_batch=1)

    async def both():
        bad = asyncio.create_task(batcher(-1))
        good = asyncio.create_task(batcher(7))
        with pytest.raises(ValueError, match="cannot score -1"):
            await bad
        return await good

    assert run(both()) == 7


def test_under_load_the_next_batch_waits_briefly_for_the_callers_just_answered():
    seen: list[list[int]] = []
    batcher = Batcher(lambda jobs: seen.append(list(jobs)) or jobs, max_batch=8, gather_s=0.5)

    async def rounds():
        await asyncio.gather(*(batcher(i) for i in range(4)))  # queued together before the batcher ran
        straggler = asyncio.create_task(batcher(10))  # arrives first after a batch of four ...
        await asyncio.sleep(0.05)
        return await asyncio.gather(straggler, *(batcher(i) for i in range(11, 13)))  # ... and waits for these

    assert run(rounds()) == [10, 11, 12]
    assert seen == [[0, 1, 2, 3], [10, 11, 12]]  # not [10] alone, then [11, 12]


def test_a_job_whose_result_is_an_exception_fails_alone():
    def score(jobs: list[int]) -> list:
        return [ValueError(f"cannot score {j}") if j < 0 else j * 10 for j in jobs]

    batcher = Batcher(score, max_batch=8)

    async def together():
        return await asyncio.gather(*(batcher(j) for j in (1, -2, 3)), return_exceptions=True)

    first, bad, third = run(together())
    assert (first, third) == (10, 30)
    assert isinstance(bad, ValueError) and str(bad) == "cannot score -2"
