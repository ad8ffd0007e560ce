"""The model catalogue: registered models with what their configs say about them."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def model_rows() -> list[dict[str, Any]]:
    """One row per registered model: frameworks, variants, tiers, full parameter count, primary claim."""
    from replicate.config.compose import compose_config
    from replicate.config.conf_tree import group_options
    from replicate.models.registry import frameworks_of, registered_names

    rows = []
    configured = set(group_options("model"))
    for name in registered_names():
        if name not in configured:
            continue  # registered but not configured: `replicate run` refuses it by name
        # Through the schema and validation, as a job reads it (nothing is compared or trained here)
        model = compose_config([f"model={name}", "tier.compare_with=none"]).model
        primary = next(c for c in model.claims if c.get("primary"))
        rows.append({"name": name, "frameworks": list(frameworks_of(name)), "variants": list(model.variants),
                     "tiers": list(model.tiers), "trainable_params": model.variants.full.trainable_params,
                     "primary_claim": OmegaConf.to_container(primary)})
    return rows
