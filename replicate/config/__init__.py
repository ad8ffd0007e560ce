"""Config composition (Hydra) and validation (structured schema)."""
