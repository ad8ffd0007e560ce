"""Model implementations behind one Task interface; see models/task.py and models/registry.py."""
