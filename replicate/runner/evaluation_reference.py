"""The evaluation path held to fixed weights: evaluation judged apart from training noise.

A smoke verdict reads a metric that carries the training's noise (seeds, kernels, threads): its
band is wide, and an evaluation defect that costs 10-30% of the metric (a score threshold, an NMS
overlap, peak extraction, input scaling) hides inside it. So each smoke tier ships fixed weights,
trained once at calibration (``replicate calibrate --evaluation-reference``), and what they
scored on the first N evaluation images under every numeric variant measured. Every smoke job,
before it trains, loads those weights into its own model (the one its Task built, with whatever
post-processing settings it carries), evaluates them through its own evaluation path (the loop's
``evaluate``: dataset, batching, inference mode, predictions, evaluator) and compares each metric
with the recorded one. Evaluation alone is near-deterministic, so the tolerance is the spread
over kernels and threads, a few orders of magnitude below the training band. The model's own
weights and every random stream are put back afterwards: the job then trains exactly as
unchecked (the smoke references are bit-exact).

The metric is computed as mid-run evaluations compute theirs, over the ground truth of the whole
split (so it reads about a quarter of the full metric): a fingerprint of the evaluation path, not
a score. The weights file stores every array of the model's state (float ones rounded to float16, which
halves what the repository carries; the recorded metrics are those of the rounded weights).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from replicate.config.selection import model_tier
from replicate.errors import ConfigError, DataError, EvaluationPathChanged

FORMAT = "zoo-replicate evaluation weights 1"
# Evaluation that draws random numbers (dropout at test time) draws them from this seed, so the
# weights score the same every time; the job's own streams are restored afterwards.
EVALUATION_SEED = 0
# The smallest gap allowed per metric, as a share of its value: what a CPU the calibration did not
# measure (another kernel set, e.g. AVX-512 here) may still move, a borderline detection's
# ranking. The measured gap over default/AVX2 kernels and 1/2 threads was 0 for every smoke model
# (docs/measurements.md, 2026-12-07); a 10% drop of the metric is 100 times this.
RELATIVE_FLOOR = 1e-3
# Measured gaps are doubled: a variant not measured may stray further than the ones that were.
SPREAD_FACTOR = 2.0


def weights_file_name(model: str, framework: str) -> str:
    return f"{model}-{framework}.pt"


def weights_dir(model: str, framework: str) -> Path:
    """Where the zoo of ``model`` in ``framework`` keeps its fixed evaluation weights (its ZooSpec)."""
    from replicate.zoo.registry import zoo_of

    zoo = zoo_of(model, framework)
    if zoo is None or zoo.spec.evaluation_weights_dir is None:
        raise ConfigError("model.tiers.smoke.evaluation_references",
                          f"{model} ({framework}) comes from no installed zoo that ships evaluation weights")
    return Path(zoo.spec.evaluation_weights_dir)


def weights_path(name: str, model: str, framework: str) -> Path:
    return weights_dir(model, framework) / name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_weights(arrays: Mapping[str, Any], target: Path, model: str, framework: str) -> str:
    """``arrays`` (name -> array or tensor, the model's whole state) to ``target``, float arrays
    as float16 where they fit; returns the file's sha256."""
    import torch

    from replicate.runner import checkpoint as ckpt

    stored = {}
    for name, value in arrays.items():
        tensor = torch.as_tensor(np.asarray(value)).detach().cpu()
        if tensor.is_floating_point():
            half = tensor.to(torch.float16)
            tensor = half if bool(torch.isfinite(half).all()) or not bool(torch.isfinite(tensor).all()) else tensor
        stored[name] = tensor.contiguous()
    ckpt.save_file(target, {"format": FORMAT, "model": model, "framework": framework, "arrays": stored})
    return sha256_of(target)


def read_weights(path: Path, sha256: str) -> dict[str, np.ndarray]:
    """The arrays of a weights file, after checking its hash; DataError naming the file otherwise."""
    from replicate.runner import checkpoint as ckpt

    if not path.is_file():
        raise DataError(str(path), "the smoke tier's evaluation reference weights are missing (recalibrate: "
                                   "replicate calibrate --evaluation-reference)")
    found = sha256_of(path)
    if found != sha256:
        raise DataError(str(path), f"sha256 {found[:12]}..., the tier records {sha256[:12]}...: not the calibrated "
                                   "weights")
    content = ckpt.load_file(path)
    if not isinstance(content, dict) or content.get("format") != FORMAT or not isinstance(content.get("arrays"), dict):
        raise DataError(str(path), f"not a {FORMAT!r} file")
    return {name: tensor.numpy() for name, tensor in content["arrays"].items()}


def fitted(arrays: Mapping[str, np.ndarray], like: Mapping[str, np.ndarray], source: Path) -> dict[str, np.ndarray]:
    """``arrays`` in the dtypes of the model's state ``like``, each name and shape checked first
    (a model that no longer has the calibrated layout cannot be scored with its weights)."""
    missing, extra = sorted(set(like) - set(arrays)), sorted(set(arrays) - set(like))
    if missing or extra:
        raise DataError(str(source), f"does not fit the model: missing {missing[:3]}, unexpected {extra[:3]} "
                                     "(the architecture changed since calibration)")
    for name, value in like.items():
        if tuple(arrays[name].shape) != tuple(value.shape):
            raise DataError(str(source), f"{name} has shape {tuple(arrays[name].shape)}, the model "
                                         f"{tuple(value.shape)} (the architecture changed since calibration)")
    return {name: arrays[name].astype(value.dtype) for name, value in like.items()}


def batches_for(images: int, batch_size: int) -> int:
    return max(1, math.ceil(images / batch_size))


def score_weights(loop: Any, path: Path, sha256: str, images: int) -> dict[str, float]:
    """What the weights at ``path`` score through ``loop``'s own evaluation on its first
    ``images`` evaluation images. The loop's model state and every random stream are restored
    afterwards, whatever happens."""
    import torch

    from replicate.runner.path_invariants import preserved_random_streams

    saved = loop.state_snapshot()
    weights = fitted(read_weights(path, sha256), saved, path)
    max_batches = batches_for(images, loop.eval_batch_size())
    with preserved_random_streams():
        try:
            loop.assign_snapshot(weights)
            torch.manual_seed(EVALUATION_SEED)
            return loop.evaluate(max_batches)
        finally:
            loop.assign_snapshot(saved)


def tolerance(recorded: float, measured_gap: float) -> float:
    """The largest gap allowed between a metric and its recorded value."""
    return max(SPREAD_FACTOR * measured_gap, RELATIVE_FLOOR * abs(recorded), 1e-9)


@dataclass(frozen=True)
class Comparison:
    """The scored metrics against the recorded ones: each gap beyond its tolerance, worst first."""

    measured: dict[str, float]
    recorded: dict[str, float]
    tolerances: dict[str, float]

    @property
    def breaches(self) -> list[str]:
        found = []
        for name, value in self.recorded.items():
            got = self.measured.get(name)
            if got is None:
                found.append((math.inf, f"{name} not measured (recorded {value:.6g})"))
                continue
            gap, allowed = abs(got - value), self.tolerances.get(name, tolerance(value, 0.0))
            if not gap <= allowed:
                found.append((gap / allowed, f"{name} {got:.6g} where calibration recorded {value:.6g} "
                                             f"(+/- {allowed:.3g})"))
        return [text for _, text in sorted(found, key=lambda pair: -pair[0])]

    def to_dict(self) -> dict[str, Any]:
        return {"measured": self.measured, "recorded": self.recorded, "tolerance": self.tolerances,
                "ok": not self.breaches}


def reference_for(cfg: Any) -> Optional[Any]:
    """The tier's evaluation reference for the job's framework, or None when it records none."""
    from replicate.config.selection import chosen_framework

    tier = model_tier(cfg)
    return (tier.get("evaluation_references") or {}).get(chosen_framework(cfg))


def check_evaluation_reference(loop: Any) -> dict[str, Any]:
    """The job's check: :func:`judge` with the tier's evaluation reference, when it records one and
    the job compares with references at all; returns what the job's record keeps."""
    if str(loop.cfg.tier.compare_with) == "none":
        return {"judged": False, "why": "tier.compare_with=none (a calibration run measures, judges nothing)"}
    reference = reference_for(loop.cfg)
    if reference is None:
        return {"judged": False, "why": "this tier records no evaluation reference"}
    return judge(loop, reference)


def judge(loop: Any, reference: Any) -> dict[str, Any]:
    """Score the evaluation reference weights through ``loop``'s evaluation and hold them to the
    record. Raises EvaluationPathChanged on a breach, DataError when the weights are missing,
    altered or no longer fit the model. A job on other data than the calibrated (a shrunk
    dataset, another generator setting) is not judged: the record says what it would score on
    the calibrated data only, and its record says why."""
    if loop.dataset_hash != str(reference.dataset_hash):
        return {"judged": False, "why": f"the evaluation data (hash {str(loop.dataset_hash)[:12]}) is not the "
                                        f"calibrated data ({str(reference.dataset_hash)[:12]})"}
    path = weights_path(str(reference.weights), loop.task.name, loop.task.framework)
    measured = score_weights(loop, path, str(reference.sha256), int(reference.images))
    recorded = {str(k): float(v) for k, v in reference.metrics.items()}
    comparison = Comparison(measured, recorded, {str(k): float(v) for k, v in reference.tolerance.items()})
    breaches = comparison.breaches
    if breaches:
        more = f" ({len(breaches) - 1} more metrics off)" if len(breaches) > 1 else ""
        raise EvaluationPathChanged(
            f"the calibrated evaluation weights ({reference.weights}) score {breaches[0]} on the first "
            f"{reference.images} evaluation images{more}: the evaluation path (preprocessing, post-processing "
            "or scoring) changed since calibration")
    return {"judged": True, "weights": str(reference.weights), "images": int(reference.images),
            **comparison.to_dict()}
