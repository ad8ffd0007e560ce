"""A job sets torch's deterministic flag as its tier says, in a worker process reused by jobs
of both kinds, without paying torch._inductor's import when the flag already holds."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys, torch
from replicate.runner.worker import set_determinism
set_determinism(False)
print(torch.are_deterministic_algorithms_enabled(), "torch._inductor" in sys.modules)
set_determinism(True)
print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
set_determinism(False)
print(torch.are_deterministic_algorithms_enabled())
"""


def test_the_flag_follows_the_tier_both_ways_and_a_held_flag_costs_no_import():
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:3] == ["False False", "True True", "False"]
