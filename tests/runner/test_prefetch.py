"""The evaluation's background loader: the same batches in the same order, loading errors raised
where they happened, and no thread left behind when the consumer stops early."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from replicate.errors import DataError
from replicate.runner.prefetch import prefetched


def _live_prefetchers() -> int:
    return sum(t.name == "batch-prefetch" for t in threading.enumerate())


def test_every_batch_comes_through_in_order():
    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))
    assert list(prefetched(iter([]))) == []


def test_loading_runs_ahead_of_the_consumer():
    """While the consumer works on batch 0, the next ones are already loaded."""
    loaded: list[int] = []

    def source():
        for i in range(4):
            loaded.append(i)
            yield i

    batches = prefetched(source(), depth=2)
    assert next(batches) == 0
    deadline = time.monotonic() + 5
    while len(loaded) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loaded[:3] == [0, 1, 2]
    assert list(batches) == [1, 2, 3]


def test_a_loading_error_is_raised_at_the_batch_it_happened_on():
    def source():
        yield 0
        yield 1
        raise DataError("val2017/000000000139.jpg", "image file is corrupt or unreadable")

    seen = []
    with pytest.raises(DataError, match="000000000139.jpg"):
        for batch in prefetched(source()):
            seen.append(batch)
    assert seen == [0, 1]


def test_stopping_early_stops_the_loader_thread():
    before = _live_prefetchers()
    endless = prefetched(itertools.count(), depth=2)
    assert list(itertools.islice(endless, 3)) == [0, 1, 2]
    endless.close()
    assert _live_prefetchers() == before
