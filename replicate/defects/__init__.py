"""Defect injection: a catalogue of named replication defects and the one place they enter a job.

``defect=NAME`` (a root config key, null by default) injects one into a job; it is part of the
config hash, so an injected job never shares an id, a row or a group verdict with a real one.
``replicate selftest`` runs the catalogue to measure the benchmark's power (replicate/selftest.py).
"""

from replicate.defects.injection import defect_of, inject
from replicate.defects.registry import CONFIG_KEY, STAGES, TYPES, Defect, Target, all_defects, check_defect, get_defect

__all__ = ["CONFIG_KEY", "STAGES", "TYPES", "Defect", "Target", "all_defects", "check_defect", "defect_of",
           "get_defect", "inject"]
