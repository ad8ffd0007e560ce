"""The step-boundary stop: the first SIGTERM/SIGINT is noted for the loop, a second stops at
once, and the caller's handlers are back afterwards."""

from __future__ import annotations

import os
import signal

import pytest

from replicate.errors import Terminated
from replicate.runner.stop_request import deferred_stops


def test_the_first_signal_is_noted_and_raised_by_the_loop_not_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with deferred_stops() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)   # delivered at the next bytecode: no exception here
        assert stop.requested and stop.name == "SIGTERM"
        assert isinstance(stop.exception(), Terminated)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_signal_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with deferred_stops() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested and type(stop.exception()) is KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):   # give the interpreter a bytecode boundary to run the handler at
                pass
            pytest.fail("the second SIGINT did not stop")
    assert signal.getsignal(signal.SIGINT) is before
