"""Schedulers: Ray (local on the fly, or a cluster address) and inline (this process)."""
