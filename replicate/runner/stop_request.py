"""A clean stop at a step boundary: SIGTERM (what Kubernetes sends a pod it stops) or Ctrl-C
during training finishes the step under way, checkpoints that step and then stops the job.

Raising the moment the signal arrives (the CLI's handler) can land between a backward pass and
the optimizer's update, where no consistent state exists: the job then resumed from its previous
checkpoint and redid those steps, and its record read like a process lost to SIGKILL. Here the
signal is noted and the loop asks for it after each step. A second signal stops at once (the
caller's handler), for a step that never ends.

Ray cancels a running task by simulating SIGINT in its worker (``_thread.interrupt_main``), so
the same path serves a job stopped by its Ray driver.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any, Iterator, Optional

from replicate.errors import Terminated

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """The first stopping signal received while training, if any."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        if self.signum is None:
            return ""
        if self.signum == signal.SIGINT and _in_ray_worker():   # how Ray's cancel arrives
            return "its driver (Ray cancelled the task)"
        return signal.Signals(self.signum).name

    def exception(self) -> KeyboardInterrupt:
        """What the stop raises once the step is checkpointed: the CLI's 143 or 130."""
        return _stop_exception(self.signum)


def _stop_exception(signum: Optional[int]) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def deferred_stops() -> Iterator[StopRequest]:
    """Note SIGTERM/SIGINT instead of raising, for the loop to stop at its next step boundary.
    Outside the main thread (a data-parallel group's driver thread) signals cannot be handled:
    the request then never fires and the caller's own handling stands."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous: dict[int, Any] = {}

    def note(signum: int, frame: Any) -> None:
        if request.requested:   # asked twice: stop now, as the caller would have
            _restore(previous)
            handler = previous.get(signum)
            if callable(handler):
                handler(signum, frame)
            raise _stop_exception(signum)
        request.signum = signum

    for signum in SIGNALS:
        previous[signum] = signal.signal(signum, note)
    try:
        yield request
    finally:
        _restore(previous)


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        if handler is not None:
            signal.signal(signum, handler)
    previous.clear()


def _in_ray_worker() -> bool:
    if "ray" not in sys.modules:
        return False
    try:
        import ray

        return bool(ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE)
    except Exception:   # noqa: BLE001 - no runtime context: not a worker Ray runs tasks in
        return False
