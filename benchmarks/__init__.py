"""Benchmarks: ratios measured side by side in one run, each against its target (``python -m benchmarks``)."""
