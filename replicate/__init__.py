"""zoo-replicate: nightly replicate-and-evaluate jobs for a computer-vision model zoo."""

__version__ = "0.1.0"
