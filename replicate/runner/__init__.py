"""The job runner: what a Ray worker executes (train -> evaluate -> JobResult)."""
