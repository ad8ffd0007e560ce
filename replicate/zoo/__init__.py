"""The seam between the harness and the zoos: the Task interface (task.py), the (model,
framework) registry (registry.py) and the installed zoos found by their entry point (installed.py)."""
