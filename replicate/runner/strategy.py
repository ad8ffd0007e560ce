"""TensorFlow distribution strategy from the hardware profile.

TPU profiles -> ``tf.distribute.TPUStrategy`` through a ``TPUClusterResolver`` (the TPU named by
$TPU_NAME, or the one attached to this VM / GKE pod when empty); several GPUs ->
``MirroredStrategy``; anything else -> the default (no-op) strategy. :func:`strategy_kind` is a
pure function of the profile, so the choice is tested on machines without TPUs;
:func:`make_strategy` does the side effects (connect, initialise the TPU system).
"""

from __future__ import annotations

import os
from typing import Any

from replicate.errors import ResourceUnavailable

TPU, MIRRORED, DEFAULT = "tpu", "mirrored", "default"
TPU_NAME_ENV = "TPU_NAME"


def strategy_kind(hardware: Any) -> str:
    """"tpu", "mirrored" or "default" for a hardware profile (``accelerator``, ``count``)."""
    accelerator, count = str(hardware.accelerator), int(hardware.get("count", 1) or 1)
    if accelerator == "tpu":
        return TPU
    if accelerator == "gpu" and count > 1:
        return MIRRORED
    return DEFAULT


def make_strategy(hardware: Any, tf: Any) -> Any:
    """The strategy of :func:`strategy_kind` for this process.

    Raises:
        ResourceUnavailable: A TPU profile but no TPU reachable from this worker.
    """
    kind = strategy_kind(hardware)
    if kind == TPU:
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get(TPU_NAME_ENV, ""))
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as exc:
            raise ResourceUnavailable(f"hardware profile {hardware.name!r} asks for a TPU but none is reachable "
                                      f"from this worker (${TPU_NAME_ENV}={os.environ.get(TPU_NAME_ENV, '')!r}): "
                                      f"{exc}") from None
        return tf.distribute.TPUStrategy(resolver)
    if kind == MIRRORED:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
