"""TensorFlow distribution strategy from the hardware profile.

TPU profiles -> ``tf.distribute.TPUStrategy`` through a ``TPUClusterResolver`` (the TPU named by
$TPU_NAME, or the one attached to this VM / GKE pod when empty); several GPUs ->
``MirroredStrategy`` over exactly ``count`` GPUs; one GPU or the CPU -> the default (no-op) strategy,
which places ops on the first GPU when there is one. A GPU profile whose GPUs TensorFlow cannot
see is refused (``ResourceUnavailable``), never run on the CPU. :func:`strategy_kind` is a
pure function of the profile, so the choice is tested on machines without TPUs;
:func:`make_strategy` does the side effects (connect, initialise the TPU system).
"""

from __future__ import annotations

import os
from typing import Any, Optional

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
        ResourceUnavailable: A TPU profile but no TPU reachable from this worker, or a GPU profile
            with fewer GPUs visible to TensorFlow than ``hardware.count``.
    """
    kind = strategy_kind(hardware)
    if kind == TPU:
        return _tpu_strategy(hardware, tf)
    if str(hardware.accelerator) == "gpu":
        gpus = _visible_gpus(hardware, tf)
        if kind == MIRRORED:
            # exactly the profile's GPUs: the cost and the batch split assume ``count`` replicas
            return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(gpus)])
    return tf.distribute.get_strategy()


def _visible_gpus(hardware: Any, tf: Any) -> int:
    """``hardware.count``, after checking TensorFlow sees that many GPUs.

    Without the check a GPU job silently trains on the CPU: tensorflow-cpu (or a CUDA mismatch)
    shows no GPU, MirroredStrategy then builds one CPU replica, and the job is billed for GPUs.
    """
    count = int(hardware.get("count", 1) or 1)
    seen = len(tf.config.list_physical_devices("GPU"))
    if seen < count:
        raise ResourceUnavailable(f"hardware profile {hardware.name!r} asks for hardware.count={count} GPUs but "
                                  f"TensorFlow {tf.__version__} sees {seen} (tf.config.list_physical_devices"
                                  f"('GPU'); tensorflow-cpu, or a TF build not matching the CUDA driver, sees none)")
    return count


def tpu_runtime_missing(tf: Any) -> Optional[str]:
    """Why this TensorFlow cannot drive a TPU, or None. A TPU is driven through libtpu, which
    tensorflow-cpu (this project's pin, 2.21) does not bring, and tensorflow-tpu stops at 2.20 on
    PyPI: the image cannot install a TPU runtime for its own TensorFlow, so it says so."""
    import importlib.util

    if importlib.util.find_spec("libtpu") is not None:
        return None
    return (f"this image's TensorFlow {tf.__version__} has no TPU runtime (no libtpu: tensorflow-cpu cannot drive a "
            "TPU, and tensorflow-tpu on PyPI stops at 2.20, below the pinned 2.21); run TPU profiles from an image "
            "whose TensorFlow and libtpu match")


def _tpu_strategy(hardware: Any, tf: Any) -> Any:
    missing = tpu_runtime_missing(tf)
    if missing:
        raise ResourceUnavailable(f"hardware profile {hardware.name!r} asks for a TPU, but {missing}")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get(TPU_NAME_ENV, ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    # OSError: with $TPU_NAME set but empty, the resolver asks the GCE metadata server, which
    # off Google Cloud is a DNS failure (urllib.error.URLError)
    except (ValueError, RuntimeError, OSError, tf.errors.OpError) as exc:
        raise ResourceUnavailable(f"hardware profile {hardware.name!r} asks for a TPU but none is reachable "
                                  f"from this worker (${TPU_NAME_ENV}={os.environ.get(TPU_NAME_ENV, '')!r}): "
                                  f"{exc}") from None
    return tf.distribute.TPUStrategy(resolver)
