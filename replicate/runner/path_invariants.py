"""Invariants on the path the job really runs: what every correct model satisfies, whatever its
architecture, checked through the loop's own ``predict_into`` and training step (not a side
path such as ``replicate check``'s ``task.predict``), in both frameworks.

Before training (and before an eval tier scores), on the first images of the evaluation split:

* **every input a network is declared to read moves its output** (``Task.ignored_inputs``:
  pix2pix's discriminator reads the label map beside the image);
* **evaluating leaves the model unchanged**: every parameter and buffer (batch norm's running
  statistics included) bit-identical afterwards;
* **evaluating twice gives the same predictions**;
* **an image's predictions do not depend on its batch mates**: the job's own first evaluation
  batch against each of its images alone (the best scores; ``replicate check`` applies the same
  rule to a batch of two).

During the job: the model is in inference mode at every evaluated batch and in training mode
after every training step (the loop's framework says what its mode is: ``BaseLoop.mode_problem``).

A task whose evaluation samples by design (pix2pix's paper inference keeps dropout on and uses the
batch's statistics: ``Task.evaluation_is_stochastic``) is held to the first invariant only, and the
record says so. Each breach is a :class:`PathInvariantBroken` naming what moved: the job ends
"incorrect functionality" before training is paid for.
"""

from __future__ import annotations

import contextlib
import math
import random
from typing import Any, Iterator, Optional

import numpy as np

from replicate.errors import PathInvariantBroken

# The job's own first evaluation batch (at most this many images: a cheap check) and each of its
# images alone; a job that evaluates one image per batch has no batch mates (torchvision's and
# CenterNet's references evaluate so), and is checked on two images one at a time.
MAX_IMAGES = 8
# Repeats and batch mates may move a prediction by float rounding only (a batch of one takes
# another convolution kernel than a batch of two): within this, and far below what dropout, batch
# statistics or a batch-level normalisation move it by (1e-2 and more on the smoke models).
ATOL = 1e-5
RTOL = 1e-5
TOP_SCORES = 20   # the best scores only: the tail is cut at a threshold that rounding can cross


class _Collect:
    """An evaluator that keeps what ``predict_into`` hands it."""

    def __init__(self) -> None:
        self.predictions: list[dict[str, Any]] = []

    def update(self, predictions: list[dict[str, Any]]) -> None:
        self.predictions.extend(predictions)


def _array(value: Any) -> Optional[np.ndarray]:
    """A float array of a prediction's value (torch tensor or numpy), None for other values."""
    detach = getattr(value, "detach", None)
    if callable(detach):
        value = detach().cpu().float().numpy()
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
        return value.astype(np.float64)
    return None


def _predict(loop: Any, images: int, batch_size: int) -> list[dict[str, Any]]:
    """The first ``images`` images' predictions, one dict per image: a task that predicts one dict
    per batch (pix2pix: the batch's generated images) has it split along the batch axis."""
    collect = _Collect()
    batches = math.ceil(images / batch_size)
    loop.predict_into(collect, max_batches=batches, batch_size=batch_size)
    predictions = collect.predictions
    if batch_size > 1 and len(predictions) == batches:
        predictions = [{key: value[i:i + 1] if _array(value) is not None else value for key, value in p.items()}
                       for p in predictions for i in range(batch_size)]
    return predictions[:images]


def _largest_change(first: list[dict[str, Any]], second: list[dict[str, Any]],
                    scores_only: bool) -> tuple[float, str, int]:
    """The largest change between two prediction lists in units of the tolerance, where it is,
    and how many values were compared."""
    worst, where, compared = 0.0, "", 0
    for index, (a, b) in enumerate(zip(first, second)):
        keys = ["scores"] if scores_only and "scores" in a else sorted(set(a) | set(b))
        for key in keys:
            x, y = _array(a.get(key)), _array(b.get(key))
            if x is None and y is None:
                continue
            if x is None or y is None:
                return math.inf, f"image {index} {key}: present once only", compared
            if scores_only and key == "scores":   # sorted: equal scores swapping places change nothing
                x, y = np.sort(x.ravel())[::-1][:TOP_SCORES], np.sort(y.ravel())[::-1][:TOP_SCORES]
                n = min(len(x), len(y))
                x, y = x[:n], y[:n]
            if x.shape != y.shape:
                return math.inf, f"image {index} {key}: shape {list(x.shape)} then {list(y.shape)}", compared
            compared += x.size
            if x.size:
                excess = float(np.max(np.abs(x - y) / (ATOL + RTOL * np.abs(y))))
                if excess > worst:
                    worst, where = excess, f"image {index} {key}: up to {float(np.max(np.abs(x - y))):.3g}"
    return worst, where, compared


def check_evaluation_path(loop: Any) -> dict[str, Any]:
    """The three evaluation invariants, through ``loop.predict_into``; what was compared, for the
    job's record. Raises PathInvariantBroken on a breach."""
    problems, deviations = loop.task.reference_settings(loop.model, loop.task.ctx.variant)
    if problems:
        raise PathInvariantBroken("evaluation", "post-processing or target assignment differs from the "
                                                f"reference's: {'; '.join(problems)}")
    if deviations:
        loop.result.environment["declared_deviations"] = deviations
    ignored = loop.task.ignored_inputs(loop.model, loop.evaluation_set())
    if ignored:
        raise PathInvariantBroken("evaluation", f"{'; '.join(ignored)} (a conditioning input dropped or "
                                                "overwritten on its way in?)")
    batch = min(int(loop.eval_batch_size()), MAX_IMAGES)
    images = max(batch, 2)
    before = loop.state_snapshot()
    pair = _predict(loop, images, batch)
    moved = _first_moved(before, loop.state_snapshot())
    if moved:
        raise PathInvariantBroken("evaluation", f"evaluating changed the model: {moved} moved (batch norm in "
                                                "training mode? a parameter written during inference?)")
    record: dict[str, Any] = {"images": len(pair), "batch_size": batch, "model_unchanged": True}
    if loop.task.evaluation_is_stochastic():
        record["not_compared"] = "the evaluation samples by design (dropout on, the batch's statistics)"
        return record
    again = _predict(loop, images, batch)
    excess, where, compared = _largest_change(pair, again, scores_only=False)
    if excess > 1.0:
        raise PathInvariantBroken("evaluation", f"evaluating twice gave other predictions: {where} (dropout on "
                                                "in evaluation? a random draw in post-processing?)")
    excess_alone, compared_alone = 0.0, 0
    if batch > 1:
        alone = _predict(loop, images, 1)
        excess_alone, where, compared_alone = _largest_change(pair, alone, scores_only=True)
    if excess_alone > 1.0:
        raise PathInvariantBroken("evaluation", f"an image's predictions depend on its batch mates: {where} "
                                                f"between a batch of {batch} and each image alone (batch "
                                                "statistics in evaluation? a batch-level normalisation?)")
    # An untrained detector may predict nothing above its score threshold: then nothing was
    # compared, and the loop checks again on the trained model before its final evaluation.
    record.update(repeatable=True, batch_independent=True if batch > 1 else "one image per batch",
                  values_compared=compared + compared_alone,
                  largest_change_in_tolerances=round(max(excess, excess_alone), 3))
    return record


def _first_moved(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> str:
    for name, value in before.items():
        other = after.get(name)
        if other is None or other.shape != value.shape or not np.array_equal(value, other, equal_nan=True):
            return name
    return ""


@contextlib.contextmanager
def preserved_random_streams() -> Iterator[None]:
    """torch's (CPU and CUDA), numpy's and Python's global random state as they were: an evaluation
    loader's iterator draws its seed from torch's generator, and the checks must not shift the
    training's draws (the smoke references are bit-exact). TensorFlow's evaluation calls the
    model with training=False and draws nothing."""
    import torch

    python, legacy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(legacy)
