"""Validate a composed config before anything runs: types by the structured schema, then the
rules types cannot say. Every failure is one ConfigError naming the key and what is allowed."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from replicate.config.schema import (
    EVAL_PROTOCOLS,
    OMZ_NMS_KINDS,
    CompareWith,
    Direction,
    Framework,
    Optimizer,
    Precision,
    RootConfig,
    Schedule,
)
from replicate.config.selection import chosen_framework, chosen_reference, model_tier
from replicate.config.values import check_recipe, require, validate_values
from replicate.errors import ConfigError
from replicate.verdict import MIN_REFERENCE_DRAWS, claim_on

FRAMEWORKS = tuple(Framework)
TIERS = ("smoke", "eval", "short", "full")
ACCELERATORS = ("cpu", "gpu", "tpu")
OPTIMIZERS = tuple(Optimizer)
SCHEDULES = tuple(Schedule)
COMPARE_WITH = tuple(CompareWith)
PRECISIONS = tuple(Precision)
MAX_TOLERANCE = 0.5


def _one_of(value, allowed, key: str) -> None:
    require(value in allowed, key, f"{value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")


def apply_schema(cfg: DictConfig) -> DictConfig:
    """Merge into the structured schema: wrong types and unknown keys fail with their key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RootConfig), cfg)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "config"
        raise ConfigError(str(key), str(exc).strip().splitlines()[0]) from None
    assert isinstance(merged, DictConfig)   # merging into a structured dataclass gives a DictConfig
    return merged


def validate(cfg: DictConfig) -> DictConfig:
    """Check the whole (schema-typed, resolved) root config; return it."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(missing[0], "required value is missing")
    _validate_lab(cfg)      # before the claims, which are held to it
    _validate_model(cfg)
    _validate_implementations(cfg)
    _validate_framework_references(cfg)
    _validate_selection(cfg)
    _validate_precision(cfg)
    _validate_defect(cfg)
    _validate_hardware(cfg)
    _validate_framework_installed(cfg)  # after the hardware: a TPU profile's refusal names the cause
    _validate_suite(cfg)
    validate_values(cfg)
    return cfg


def _validate_model(cfg: DictConfig) -> None:
    model = cfg.model
    for i, fw in enumerate(model.frameworks):
        _one_of(fw, FRAMEWORKS, f"model.frameworks[{i}]")
    require("full" in model.variants, "model.variants", "a 'full' variant (the paper's architecture) is required")
    full = model.variants.full
    require(full.trainable_params is not None, "model.variants.full.trainable_params", "required (with its source)")
    require(bool(full.params_source), "model.variants.full.params_source", "required: where the count comes from")
    require(len(model.claims) > 0, "model.claims", "at least one claim is required")
    for i, claim in enumerate(model.claims):
        _validate_claim(cfg, claim, f"model.claims[{i}]")
    require(any(c.primary for c in model.claims), "model.claims", "one claim must be primary: true")
    for name, tier in model.tiers.items():
        _validate_model_tier(cfg, name, tier)


def _validate_implementations(cfg: DictConfig) -> None:
    """Each implementation of the model checks the model config it would run (its Task's
    ``check_config``: e.g. every variant's Darknet cfg found): a missing file is the config's
    error, refused before scheduling, never the model's crash, whichever tier runs it."""
    from replicate.zoo.registry import frameworks_of, get_task_class
    from replicate.zoo.task import Task

    for framework in frameworks_of(str(cfg.model.name)):
        task_class: type[Task] = get_task_class(str(cfg.model.name), framework)
        task_class.check_config(cfg.model)


def _validate_claim(cfg: DictConfig, claim, key: str) -> None:
    require(bool(str(claim.source).strip()), f"{key}.source", "required: paper table or reference file")
    _one_of(claim.kind, ("paper", "zoo", "author", "third_party"), f"{key}.kind")
    _one_of(claim.direction, tuple(Direction), f"{key}.direction")
    _one_of(claim.tolerance_kind, ("relative", "absolute"), f"{key}.tolerance_kind")
    if claim.tolerance_kind == "relative":
        require(0 < claim.tolerance <= MAX_TOLERANCE, f"{key}.tolerance",
                 f"{claim.tolerance} is outside (0, {MAX_TOLERANCE}]")
    else:
        require(claim.tolerance > 0, f"{key}.tolerance", f"{claim.tolerance} must be > 0")
    _validate_claim_tolerance(cfg, claim, key)
    if claim.variant is not None:
        _one_of(claim.variant, list(cfg.model.variants), f"{key}.variant")


def _validate_lab(cfg: DictConfig) -> None:
    """The lab's accepted range of relative tolerances: [low, high] with 0 < low <= high, inside
    the outer bound every claim keeps."""
    key = "lab.tolerance_range"
    bounds = list(cfg.lab.tolerance_range)
    require(len(bounds) == 2, key, f"{bounds} must be two numbers, [low, high]")
    low, high = bounds
    require(0 < low <= high <= MAX_TOLERANCE, key,
            f"[{low:g}, {high:g}] must have 0 < low <= high <= {MAX_TOLERANCE:g}")


def _validate_claim_tolerance(cfg: DictConfig, claim, key: str) -> None:
    """The lab's rule: a relative tolerance inside ``lab.tolerance_range``, or a stated reason.

    An absolute tolerance always states its reason; it is not converted to a relative one against
    the claim's value for the range check, which would admit the same +-0.01 silently at 0.66 and
    ask for a reason at 0.17 (pix2pix), so whether a claim explains itself would follow its
    value. It keeps the relative outer bound, in the value's units.
    """
    low, high = cfg.lab.tolerance_range
    stated = bool((claim.tolerance_reason or "").strip())
    why = f"state why in {key}.tolerance_reason"
    if claim.tolerance_kind == "absolute":
        require(stated, f"{key}.tolerance",
                f"an absolute tolerance ({claim.tolerance:g}) departs from the lab's relative range "
                f"[{low:g}, {high:g}] (lab.tolerance_range): {why}")
        require(claim.tolerance <= MAX_TOLERANCE * abs(claim.value), f"{key}.tolerance",
                f"{claim.tolerance:g} is more than {MAX_TOLERANCE:g} of the value {claim.value:g}")
    else:
        require(stated or low <= claim.tolerance <= high, f"{key}.tolerance",
                f"{claim.tolerance:g} is outside the lab's range [{low:g}, {high:g}] (lab.tolerance_range): "
                f"keep it inside or {why}")


def _validate_test_protocol(test, key: str) -> None:
    """The evaluation protocol and what it needs: the accuracy checker names its NMS and
    stretches the image (a letterbox is darknet's)."""
    if test.protocol is not None:
        _one_of(test.protocol, EVAL_PROTOCOLS, f"{key}.protocol")
    if test.protocol == "omz_accuracy_checker":
        require(test.nms is not None, f"{key}.nms", f"required with protocol omz_accuracy_checker: "
                                                    f"one of {', '.join(OMZ_NMS_KINDS)}")
        _one_of(test.nms, OMZ_NMS_KINDS, f"{key}.nms")
        require(test.letter_box is None, f"{key}.letter_box", "the accuracy checker stretches the image: "
                                                              "letter_box is darknet's, leave it unset")
    else:
        require(test.nms is None, f"{key}.nms", "only with protocol omz_accuracy_checker")


def _validate_model_tier(cfg: DictConfig, name: str, tier) -> None:
    key = f"model.tiers.{name}"
    _one_of(name, TIERS, key)
    _one_of(tier.variant, list(cfg.model.variants), f"{key}.variant")
    _one_of(tier.data, list(cfg.datasets), f"{key}.data")
    if tier.recipe is not None:
        _validate_recipe(tier.recipe, f"{key}.recipe")
    _one_of(tier.precision, PRECISIONS, f"{key}.precision")
    require(tier.eval_batch_size is None or tier.eval_batch_size >= 1, f"{key}.eval_batch_size",
            f"{tier.eval_batch_size} must be >= 1")
    require(not tier.test.keep_resolution or tier.eval_batch_size == 1, f"{key}.eval_batch_size",
            "must be 1 with test.keep_resolution (each image keeps its own size)")
    require(tier.test.result_decimals is None or tier.test.result_decimals >= 0, f"{key}.test.result_decimals",
            f"{tier.test.result_decimals} must be >= 0")
    _validate_test_protocol(tier.test, f"{key}.test")
    if tier.claim_split is not None:
        splits = sorted({c.split for c in cfg.model.claims})
        _one_of(tier.claim_split, splits, f"{key}.claim_split")
        evaluated = cfg.datasets[tier.data].splits.get(tier.eval_split)
        published = evaluated.published_as if evaluated is not None else None
        # A claim measured on another split (test-dev, minival) cannot be checked on this one.
        require(published == tier.claim_split, f"{key}.claim_split",
                f"{tier.claim_split!r} is not the split this tier evaluates (datasets.{tier.data}.splits."
                f"{tier.eval_split} is {published or 'no published split'})")
        claim = claim_on(cfg.model.claims, tier.variant, tier.claim_split)
        measured_at = claim.get("input_size") if claim is not None else None
        # A claim measured at another resolution says nothing about this one.
        require(measured_at in (None, tier.input_size), f"{key}.input_size",
                f"{tier.input_size} is not the {measured_at} its claim on {tier.claim_split} was measured at")
    for metric, direction in tier.also_judged.items():
        _one_of(direction, tuple(Direction), f"{key}.also_judged.{metric}")
    if tier.reference is not None:
        _validate_reference(tier.reference, f"{key}.reference")
        _validate_also(tier, tier.reference, f"{key}.reference", judged=_judges_reference(cfg, name))
    for framework, ref in tier.framework_references.items():
        _validate_reference(ref, f"{key}.framework_references.{framework}")
        _validate_also(tier, ref, f"{key}.framework_references.{framework}", judged=_judges_reference(cfg, name))
    for framework, ref in tier.evaluation_references.items():
        _validate_evaluation_reference(ref, f"{key}.evaluation_references.{framework}")


def _validate_evaluation_reference(ref, key: str) -> None:
    """Fixed evaluation weights: a plain file name (read from the project's own folder, never a
    path elsewhere), a positive image count, and a tolerance for every recorded metric."""
    name = str(ref.weights)
    require(name == Path(name).name and name not in ("", ".", "..") and name.endswith(".pt"), f"{key}.weights",
            f"{name!r} must be a .pt file name in models/zoo_models/evaluation_weights/, not a path")
    require(len(str(ref.sha256)) == 64 and all(c in "0123456789abcdef" for c in str(ref.sha256)), f"{key}.sha256",
            "must be the file's 64-digit lowercase hex sha256")
    require(int(ref.images) >= 1, f"{key}.images", f"{ref.images} must be >= 1")
    require(len(ref.metrics) > 0, f"{key}.metrics", "records no metric")
    for metric in ref.metrics:
        value = ref.tolerance.get(metric)
        require(value is not None and float(value) > 0, f"{key}.tolerance.{metric}",
                "every recorded metric needs a positive tolerance (replicate calibrate --evaluation-reference)")


def _validate_reference(ref, key: str) -> None:
    """A recorded reference needs its draws: the band is a prediction interval over them."""
    require(len(ref.draws) >= MIN_REFERENCE_DRAWS, f"{key}.draws",
             f"{len(ref.draws)} draw(s); a band from fewer than {MIN_REFERENCE_DRAWS} is too wide to fail "
             f"(replicate calibrate records them)")
    require(not ref.labels or len(ref.labels) == len(ref.draws), f"{key}.labels", "one label per draw")
    require(not ref.early_draws or len(ref.early_draws) == len(ref.draws), f"{key}.early_draws",
             "one early-check value per draw")
    require(not ref.early_loss_draws or len(ref.early_loss_draws) == len(ref.draws), f"{key}.early_loss_draws",
             "one early-check loss per draw")
    require(not ref.final_loss_draws or len(ref.final_loss_draws) == len(ref.draws), f"{key}.final_loss_draws",
             "one final training loss per draw")
    require(not ref.early_drift_draws or len(ref.early_drift_draws) == len(ref.draws), f"{key}.early_drift_draws",
             "one early-check weight drift per draw")
    require(ref.spread >= 0, f"{key}.spread", f"{ref.spread} must be >= 0")
    require(bool(ref.source.strip()), f"{key}.source", "required: how it was measured")


def _judges_reference(cfg: DictConfig, name: str) -> bool:
    """Whether this job judges tier ``name`` against its recorded reference (a calibration run
    measures, so it may run before the reference records every metric it will judge)."""
    return str(cfg.tier.name) == name and str(cfg.tier.compare_with) == "reference"


def _validate_also(tier, ref, key: str, *, judged: bool) -> None:
    """Each metric the tier judges beside the reference's has one draw per calibration draw and
    the tier's direction; a job judged against the reference refuses a metric with no draws (it
    would never be judged: recalibrate)."""
    for metric, recorded in ref.also.items():
        require(metric in tier.also_judged, f"{key}.also.{metric}",
                f"recorded, but not in the tier's also_judged ({', '.join(tier.also_judged) or 'none'})")
        require(len(recorded.draws) == len(ref.draws), f"{key}.also.{metric}.draws", "one value per draw")
        require(recorded.direction == tier.also_judged[metric], f"{key}.also.{metric}.direction",
                f"{recorded.direction!r} where the tier's also_judged says {tier.also_judged[metric]!r}")
    if judged:
        for metric in tier.also_judged:
            require(metric in ref.also, f"{key}.also.{metric}",
                    "no calibration draws of this also_judged metric: run replicate calibrate for this model")


def _validate_recipe(recipe, key: str) -> None:
    _one_of(recipe.optimizer, OPTIMIZERS, f"{key}.optimizer")
    _one_of(recipe.schedule, SCHEDULES, f"{key}.schedule")
    check_recipe(recipe, key)
    require(recipe.batch_size > 0, f"{key}.batch_size", f"{recipe.batch_size} must be > 0")
    require((recipe.steps is None) != (recipe.epochs is None), f"{key}.steps",
             "give exactly one of steps or epochs")
    length = recipe.steps if recipe.steps is not None else recipe.epochs
    require(length > 0, f"{key}.{'steps' if recipe.steps is not None else 'epochs'}", f"{length} must be > 0")
    require(list(recipe.milestones) == sorted(recipe.milestones), f"{key}.milestones", "must be increasing")
    require(recipe.checkpoint_every > 0, f"{key}.checkpoint_every", "must be > 0")
    require(bool(recipe.source.strip()), f"{key}.source", "required: where the recipe comes from")


def _validate_selection(cfg: DictConfig) -> None:
    """The chosen tier, variant, framework and seed must exist for the chosen model."""
    model = cfg.model
    require(cfg.tier.name in model.tiers, "tier",
             f"model '{model.name}' defines no tier '{cfg.tier.name}'; allowed: {', '.join(model.tiers)}")
    tier = model.tiers[cfg.tier.name]
    if cfg.variant is not None:
        _one_of(cfg.variant, list(model.variants), "variant")
    if cfg.framework is not None:
        _one_of(cfg.framework, list(model.frameworks), "framework")
    require(cfg.seed >= 0, "seed", f"{cfg.seed} must be >= 0")
    _one_of(cfg.device, ("auto", "cpu", "cuda"), "device")
    _one_of(cfg.tier.compare_with, COMPARE_WITH, "tier.compare_with")
    early = cfg.tier.early_check
    require(0 < early.fraction < 1, "tier.early_check.fraction", f"{early.fraction} is outside (0, 1)")
    require(0 < early.tolerance < 1, "tier.early_check.tolerance", f"{early.tolerance} is outside (0, 1)")
    require(0 < cfg.tier.false_alarm < 0.5, "tier.false_alarm", f"{cfg.tier.false_alarm} is outside (0, 0.5)")
    require(cfg.tier.num_threads is None or cfg.tier.num_threads >= 1, "tier.num_threads",
             f"{cfg.tier.num_threads} must be >= 1")
    key = f"model.tiers.{cfg.tier.name}"
    if cfg.tier.trains:
        require(tier.recipe is not None, f"{key}.recipe", f"tier '{cfg.tier.name}' trains: a recipe is required")
    reference = chosen_reference(cfg)
    if cfg.tier.compare_with == "reference":
        require(reference is not None, f"{key}.reference",
                 "not recorded yet: measure it over seeds (replicate calibrate) and add it")
    if cfg.tier.compare_with == "reference_curve" and reference is not None:
        # Without a recorded reference, the lab's promoted reference runs give the curve.
        fraction = str(cfg.tier.schedule_fraction)
        require(fraction in reference.curve, f"{key}.reference.curve",
                f"needs the reference metric at fraction {fraction} of the schedule")
    if cfg.tier.compare_with == "claim":
        require(tier.claim_split is not None, f"{key}.claim_split",
                 "which claim split this tier checks; claims are on: "
                 f"{', '.join(sorted({c.split for c in model.claims}))}")
        require(tier.deviations is not None, f"{key}.deviations",
                 "a tier judged against a published claim lists its deviations from the reference "
                 "recipe and evaluation ([] when there are none)")


def _validate_precision(cfg: DictConfig) -> None:
    """The job-wide ``precision`` is one of Precision; amp only where a loop implements it (the
    TensorFlow loop has no mixed-precision path: it runs fp32, its references' arithmetic)."""
    from replicate.precision import chosen_precision, precision_key

    if cfg.get("precision") is not None:
        _one_of(cfg.precision, PRECISIONS, "precision")
    require(not (chosen_precision(cfg) == Precision.AMP and chosen_framework(cfg) == Framework.TENSORFLOW),
            precision_key(cfg), "amp: the TensorFlow loop runs fp32 only; allowed with framework=tensorflow: fp32")


def _validate_defect(cfg: DictConfig) -> None:
    """An injected defect (``defect=NAME``) must be in the catalogue and apply to this job's
    model and framework (replicate/defects)."""
    if cfg.get("defect") is not None:
        from replicate.defects import check_defect

        check_defect(str(cfg.defect), cfg.model.name, chosen_framework(cfg))


def _validate_framework_references(cfg: DictConfig) -> None:
    """``framework_references`` name frameworks the model has (selection.chosen_reference picks)."""
    if cfg.tier.name not in cfg.model.tiers:
        return  # _validate_selection names the missing tier
    tier = model_tier(cfg)
    for framework in tier.framework_references:
        _one_of(framework, list(cfg.model.frameworks), f"model.tiers.{cfg.tier.name}.framework_references")
    for framework in tier.evaluation_references:
        _one_of(framework, list(cfg.model.frameworks), f"model.tiers.{cfg.tier.name}.evaluation_references")


def _validate_framework_installed(cfg: DictConfig) -> None:
    """A TensorFlow job run on this machine needs TensorFlow here: refuse it before scheduling.

    Only looked up (find_spec), never imported: importing TensorFlow costs seconds and must come
    after torchvision.ops in a process (models/zoo_models/darknet/tf_backend.py). A scheduler with a Ray
    address runs jobs on the cluster's workers, whose image may carry TensorFlow when this
    driver's does not (Dockerfile EXTRAS): there the worker reports it (environment/crash).
    """
    if chosen_framework(cfg) != "tensorflow" or cfg.scheduler.get("address"):
        return
    if find_spec("tensorflow") is None:
        from replicate.tf_import import INSTALL_HINT  # imports no TensorFlow

        raise ConfigError("framework", f"tensorflow is not installed; {INSTALL_HINT}")


def _validate_hardware(cfg: DictConfig) -> None:
    hw = cfg.hardware
    _one_of(hw.accelerator, ACCELERATORS, "hardware.accelerator")
    require(hw.count >= 1, "hardware.count", f"{hw.count} must be >= 1")
    require(hw.price_per_accelerator_hour >= 0, "hardware.price_per_accelerator_hour", "must be >= 0")
    require(isinstance(hw.currency, str) and len(hw.currency) == 3 and hw.currency.isascii() and hw.currency.isupper(),
            "hardware.currency", f"{hw.currency!r} is not an ISO 4217 code (three capital letters, e.g. USD, EUR)")
    if hw.accelerator == "tpu":
        require("tensorflow" in cfg.model.frameworks, "hardware",
                 f"'{hw.name}' is a TPU profile but model '{cfg.model.name}' has no TensorFlow implementation "
                 f"(frameworks: {', '.join(cfg.model.frameworks)}); allowed: GPU or CPU profiles")
        require(cfg.framework in (None, "tensorflow"), "framework",
                 "a TPU profile runs the TensorFlow implementation; allowed: tensorflow")


def _validate_suite(cfg: DictConfig) -> None:
    from replicate.config.conf_tree import group_options

    for i, entry in enumerate(cfg.suite.entries):
        key = f"suite.entries[{i}]"
        _one_of(entry.model, group_options("model"), f"{key}.model")
        _one_of(entry.tier, group_options("tier"), f"{key}.tier")
        _one_of(entry.hardware, group_options("hardware"), f"{key}.hardware")
        require(len(entry.seeds) > 0, f"{key}.seeds", "at least one seed")
