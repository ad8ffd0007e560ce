"""The model catalogue: registered models with what their configs say about them."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def model_rows() -> list[dict[str, Any]]:
    """One row per registered model: frameworks, variants, tiers, full parameter count, primary claim."""
    from models.registry import registered_names
    from replicate.config.conf_tree import conf_dir

    rows = []
    for name in registered_names():
        path = conf_dir() / "model" / f"{name}.yaml"
        if not path.is_file():
            continue  # registered but not configured: `replicate run` refuses it by name
        model = OmegaConf.load(path)
        primary = next(c for c in model.claims if c.get("primary"))
        rows.append({"name": name, "frameworks": list(model.frameworks), "variants": list(model.variants),
                     "tiers": list(model.tiers), "trainable_params": model.variants.full.trainable_params,
                     "primary_claim": OmegaConf.to_container(primary)})
    return rows
