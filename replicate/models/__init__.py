"""Model implementations behind one Task interface; see replicate/models/task.py and replicate/models/registry.py."""
