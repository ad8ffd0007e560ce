"""The model catalogue: registered models with what their configs say about them, and for each
tier what it is compared with (a published claim with its source and split, this
implementation's recorded reference, or nothing) and its known deviations from the reference."""

from __future__ import annotations

from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from replicate.precision import declared_deviations


def model_rows() -> list[dict[str, Any]]:
    """One row per registered model: its zoo, frameworks, variants, tiers (each with what it is compared
    with and its deviations), full parameter count, primary claim."""
    from replicate.config.compose import compose_config
    from replicate.config.conf_tree import group_options
    from replicate.zoo.registry import frameworks_of, registered_names, zoo_of

    rows = []
    configured = set(group_options("model"))
    for name in registered_names():
        if name not in configured:
            continue  # registered but not configured: `replicate run` refuses it by name
        # Through the schema and validation, as a job reads it (nothing is compared or trained here)
        cfg = compose_config([f"model={name}", "tier.compare_with=none"])
        model = cfg.model
        primary = next(c for c in model.claims if c.get("primary"))
        zoo = zoo_of(name, frameworks_of(name)[0])
        rows.append({"name": name,
                     # where the model comes from: the installed zoo's entry point, distribution, version
                     "zoo": ({"name": zoo.name, "distribution": zoo.distribution, "version": zoo.version}
                             if zoo else None),
                     "frameworks": list(frameworks_of(name)), "variants": list(model.variants),
                     "tiers": list(model.tiers), "trainable_params": model.variants.full.trainable_params,
                     "primary_claim": OmegaConf.to_container(primary),
                     "tier_details": [tier_row(model, tier, cfg.datasets) for tier in model.tiers]})
    return rows


def tier_row(model: DictConfig, name: str, datasets: DictConfig) -> dict[str, Any]:
    """What tier ``name`` of ``model`` is judged against, on which split, and how it deviates."""
    tier = model.tiers[name]
    split = datasets[tier.data].splits.get(tier.eval_split)
    compared: Optional[dict[str, Any]] = None
    if tier.claim_split is not None:
        from replicate.verdict import claim_on, instrument_claims, other_claims

        claim = claim_on(model.claims, tier.variant, tier.claim_split)
        if claim is not None:
            compared = {"kind": "claim", "split": claim.split, **_claim(claim),
                        # judged too: the first one missed decides the verdict
                        "also": [_claim(c) for c in other_claims(model.claims, claim, tier.variant,
                                                                 int(tier.input_size))],
                        # what the measuring instrument must reproduce first (else the job is INFRA)
                        "instrument": [_claim(c) for c in instrument_claims(model.claims, claim.split, tier.variant)]}
    elif tier.reference is not None:
        compared = {"kind": "reference", "metric": tier.reference.metric, "value": tier.reference.value,
                    "split": tier.eval_split, "source": tier.reference.source}
    return {"tier": name, "variant": tier.variant, "data": tier.data,
            "evaluated_split": split.published_as if split is not None and split.published_as else tier.eval_split,
            "compared_with": compared,   # None: nothing to compare with (MEASURED)
            "deviations": declared_deviations(tier.deviations, tier.precision),
            "precision": tier.precision,
            # what a lab places under $ZOO_DATA_ROOT/checkpoints/ for this tier: the released
            # checkpoint it scores (eval tiers), the pretrained trunk it starts from (training
            # tiers), the network its metric is measured with
            "released": _container(tier.get("released")),
            "backbone_weights": _container(tier.get("backbone_weights")),
            "segmenter": _container(tier.get("segmenter")),
            # how the tier tests where the reference does (CenterNet: --keep_res, rounded results)
            "test": _container(tier.get("test"))}


def _claim(claim: DictConfig) -> dict[str, Any]:
    """A judged claim: its number, its source and its band (with why, where it departs from the lab's rule)."""
    return {"metric": claim.metric, "value": claim.value, "source": claim.source, "tolerance": claim.tolerance,
            "tolerance_kind": claim.tolerance_kind, "tolerance_reason": claim.tolerance_reason}


def _container(node: Any) -> Optional[dict[str, Any]]:
    return OmegaConf.to_container(node) if node is not None else None  # type: ignore[return-value]
