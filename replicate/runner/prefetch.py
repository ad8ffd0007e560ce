"""Batches loaded by a background thread ahead of the loop that consumes them.

On a CPU the DataLoader has no worker processes (the job's threads use the cores it was given,
and forking a process that has run TensorFlow can hang the child). A thread still overlaps the
loading with the network: Pillow's decoder and torch's kernels release the GIL.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_POLL_S = 0.1   # how often a blocked loader checks whether the consumer has stopped


def prefetched(batches: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yields ``batches`` in order, loaded by a thread up to ``depth`` ahead.

    An exception raised while loading (a corrupt image's DataError) is raised here, at the batch
    it happened on. Closing the generator early (``itertools.islice``, an error in the consumer)
    stops the thread and waits for it.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def load() -> None:
        try:
            for batch in batches:
                if not offer(("batch", batch)):
                    return
            offer(("done", None))
        except BaseException as exc:   # noqa: BLE001 - handed to the consumer, which raises it
            offer(("error", exc))

    thread = threading.Thread(target=load, name="batch-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = ready.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
