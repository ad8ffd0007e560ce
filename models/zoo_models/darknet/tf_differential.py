"""Differential test of the two Darknet backends: PyTorch vs TensorFlow on the same weights.

The lab's YOLO replications were TensorFlow re-implementations checked against PyTorch ones
(issue 3). Both builds load the same Darknet ``.weights`` file (the format is the contract), see
the same images, and every layer's output is compared, so a mismatch names the *first* layer
that differs (index and type) instead of only "the heads disagree". Layers feed each other, so
the first differing layer is where the defect is; later ones only inherit it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from zoo_models.darknet.cfg_parser import DarknetGraph

# float32 tolerance of issue 3 ("max absolute difference at most 1e-4 in float32"): two correct
# builds differ only by summation order inside convolutions (~1e-6 relative for these depths).
DEFAULT_ATOL = 1e-4
VARIANCE_FLOOR = 0.5   # added to calibrated BN variances (calibrate_batch_norm)


@dataclass
class LayerDiff:
    """Max |torch - tf| of one layer's output (compared in NHWC)."""

    index: int
    type: str
    max_abs_diff: float
    shape: tuple[int, ...]


@dataclass
class DifferentialReport:
    """Per-layer and per-head differences of one comparison."""

    atol: float
    layers: list[LayerDiff] = field(default_factory=list)
    heads: list[LayerDiff] = field(default_factory=list)

    @property
    def first_mismatch(self) -> Optional[LayerDiff]:
        """The first layer (darknet order) whose output differs by more than ``atol``."""
        return next((d for d in self.layers if not d.max_abs_diff <= self.atol), None)

    @property
    def max_head_diff(self) -> float:
        return max((d.max_abs_diff for d in self.heads), default=0.0)

    @property
    def ok(self) -> bool:
        return self.first_mismatch is None and all(d.max_abs_diff <= self.atol for d in self.heads)

    def summary(self) -> str:
        """One line: the verdict, the worst head difference and the first differing layer."""
        heads = ", ".join(f"yolo{d.index} {d.max_abs_diff:.2e}" for d in self.heads)
        if self.ok:
            return (f"torch vs tensorflow: {len(self.layers)} layers agree within {self.atol:g}; "
                    f"heads max |diff| {heads}")
        bad = self.first_mismatch
        where = f"first differing layer {bad.index} ({bad.type}): max |diff| {bad.max_abs_diff:.3g}" if bad else \
            "layers agree but a head differs"
        return f"torch vs tensorflow differ (> {self.atol:g}): {where}; heads {heads}"


def torch_layer_outputs(model: Any, images: Any) -> dict[int, Any]:
    """Every layer's output of a torch ``DarknetModel`` (eval mode), by darknet index (NCHW).

    Captured by forward hooks while ``model(images)`` runs, so what is compared is the production
    forward's routing (which saved map each route/shortcut reads), not a re-implementation of it.
    A [yolo] layer's output is the head ``model(images)`` returned for it.
    """
    import torch

    saved: dict[int, Any] = {}

    def keep(index: int) -> Any:
        return lambda _module, _inputs, output: saved.__setitem__(index, output)

    handles = [module.register_forward_hook(keep(layer.index))
               for layer, module in zip(model.graph.layers, model.layers) if layer.type != "yolo"]
    try:
        with torch.no_grad():
            heads = model(images)
    finally:
        for handle in handles:
            handle.remove()
    for layer, head in zip(model.graph.yolo_layers, heads):
        saved[layer.index] = head
    return saved


def compare_models(torch_model: Any, tf_model: Any, images: np.ndarray,
                   atol: float = DEFAULT_ATOL) -> DifferentialReport:
    """Compare two builds of one graph on ``images`` ([B, C, H, W] float32 in [0, 1]).

    Both models must already hold the same weights; the torch model is put in eval mode.
    """
    import torch

    from replicate.tf_import import tensorflow

    tf = tensorflow()
    torch_model.eval()
    ours = torch_layer_outputs(torch_model, torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
    theirs = tf_model.forward_all(tf.constant(np.transpose(images, (0, 2, 3, 1)), dtype=tf.float32))
    report = DifferentialReport(atol)
    for layer in torch_model.graph.layers:
        # a layer the production forward never ran (no hook fired) counts as differing
        a = np.transpose(ours[layer.index].numpy(), (0, 2, 3, 1)) if layer.index in ours else None
        b = theirs[layer.index].numpy()
        diff = float(np.max(np.abs(a - b))) if a is not None and a.shape == b.shape else float("inf")
        entry = LayerDiff(layer.index, layer.type, diff, tuple(b.shape))
        report.layers.append(entry)
        if layer.type == "yolo":
            report.heads.append(entry)
    return report


def randomise_torch(model: Any, seed: int) -> Any:
    """Give every parameter and BN statistic seeded random values in a well-conditioned range.

    Default init leaves BN at mean 0 / variance 1, which would hide a swapped mean/variance or
    gamma/beta; random statistics make every value in the .weights file matter.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if "bn" in name:  # gamma ~ U(.5, 1.5), beta ~ U(-.1, .1)
                low, high = (0.5, 1.5) if name.endswith("weight") else (-0.1, 0.1)
                tensor.copy_(low + (high - low) * torch.rand(tensor.shape, generator=gen))
            elif name.endswith("bias"):
                tensor.copy_(0.2 * torch.rand(tensor.shape, generator=gen) - 0.1)
            else:  # kernels: He-uniform scale keeps activations O(1) through 100+ layers
                fan_in = tensor[0].numel()
                bound = (6.0 / fan_in) ** 0.5
                tensor.copy_((2 * torch.rand(tensor.shape, generator=gen) - 1) * bound)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.2 * torch.rand(buffer.shape, generator=gen) - 0.1)
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=gen))
    return model.eval()


def calibrate_batch_norm(model: Any, images: np.ndarray) -> Any:
    """Set every BN's rolling statistics to those of ``images`` (one train-mode pass).

    Random statistics let activations grow through YOLOv3's 23 residual blocks until float32
    rounding alone exceeds an absolute 1e-4; data-dependent statistics keep every BN output
    normalised, so the absolute tolerance means the same at layer 5 and at layer 105.
    """
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: after one batch, exactly its statistics
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                # a floor on the variance: a channel nearly constant over a 2-image batch would
                # otherwise amplify float32 rounding by 1/sqrt(eps) (trained statistics do not)
                assert module.running_var is not None   # darknet's BN tracks its statistics
                module.running_var.add_(VARIANCE_FLOOR)
    return model.eval()


def write_random_weights(graph: DarknetGraph, path: str | Path, seed: int = 0,
                         images: Optional[np.ndarray] = None) -> Path:
    """A .weights file of random (seeded) values for ``graph``, written through the torch side.

    With ``images``, BN statistics are calibrated on them (calibrate_batch_norm).
    """
    from zoo_models.darknet.torch_backend import build_model
    from zoo_models.darknet.weights import save_darknet_weights

    model = randomise_torch(build_model(graph), seed)
    if images is not None:
        model = calibrate_batch_norm(model, images)
    return save_darknet_weights(model, path)


def random_images(batch: int, size: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """[B, C, size, size] float32 images in [0, 1]."""
    return np.random.default_rng(seed).random((batch, channels, size, size), dtype=np.float32)


def run_differential(graph: DarknetGraph, images: np.ndarray, weights: Optional[Path] = None, seed: int = 0,
                     atol: float = DEFAULT_ATOL) -> tuple[DifferentialReport, Any, Any]:
    """Build both backends of ``graph``, load the same .weights into each, compare them.

    Args:
        graph: The parsed cfg.
        images: [B, C, H, W] float32.
        weights: A .weights file; None writes a seeded random one (BN statistics calibrated on
            ``images``) to a temporary folder.
        seed: Seed of the random weights.
        atol: Allowed max absolute difference.

    Returns:
        (report, torch model, tf model), the models kept so a caller can perturb and re-compare.
    """
    from zoo_models.darknet import tf_weights
    from zoo_models.darknet.tf_backend import build_model as build_tf
    from zoo_models.darknet.torch_backend import build_model as build_torch
    from zoo_models.darknet.weights import load_darknet_weights

    torch_model, tf_model = build_torch(graph), build_tf(graph)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(weights) if weights is not None else write_random_weights(graph, Path(tmp) / "random.weights",
                                                                                    seed, images)
        load_darknet_weights(torch_model, path, strict=True)
        tf_weights.load_darknet_weights(tf_model, path, strict=True)
    return compare_models(torch_model, tf_model, images, atol), torch_model, tf_model
