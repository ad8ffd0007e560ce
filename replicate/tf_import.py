"""The process-wide TensorFlow gateway: every module that needs TensorFlow gets it here.

``import tensorflow`` costs seconds and is an optional extra (``pip install '.[tensorflow]'``), so
it is imported on first use; this module also fixes the import order that lets TensorFlow and
torch share one process, and TensorFlow's thread pools. Importing this module imports no TensorFlow.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from replicate.errors import ConfigError, ResourceUnavailable

INSTALL_HINT = "pip install -e '.[tensorflow]' (tensorflow-cpu 2.21)"


def tensorflow(num_threads: Optional[int] = None) -> Any:
    """The ``tensorflow`` module, imported on first use with a bounded thread pool.

    Args:
        num_threads: intra-op threads (default: $OMP_NUM_THREADS, which a job sets from its plan,
            else 1, the smoke tier's count). TF's own default pool is one thread per core for
            intra- *and* inter-op work; on a shared 2-core machine running torch in the same
            process that oversubscribes the cores.

    Raises:
        ConfigError: TensorFlow is not installed (key ``framework``).
        ResourceUnavailable: ``num_threads`` was asked for and TensorFlow already runs in this
            process with another count.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ info lines would bury the progress output
    _load_triton_first()
    try:
        import tensorflow as tf
    except ImportError:
        raise ConfigError("framework", f"tensorflow is not installed; {INSTALL_HINT}") from None
    threads = num_threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        # The runtime is already initialised: its pools are fixed for this process. A caller that
        # asks for a count (a job, from its plan) must get it, or its numbers silently change.
        held = tf.config.threading.get_intra_op_parallelism_threads()
        if num_threads and held != num_threads:
            raise ResourceUnavailable(
                f"TensorFlow already runs in this process with {held} intra-op thread(s) and the job's "
                f"plan asks for {num_threads} (its pools cannot change once it has run): run TensorFlow "
                f"jobs of different num_threads under Ray (scheduler=local), where each gets its own "
                f"process") from None
    return tf


def _load_triton_first() -> None:
    """Import triton (if installed) before TensorFlow.

    torch._dynamo imports triton lazily (e.g. when torchvision.models is first imported); loading
    triton's native library *after* TensorFlow's segfaults (measured with torch 2.14.1, triton from
    its wheel, tensorflow-cpu 2.21.0: ``import tensorflow; import torchvision.ops`` crashes, the
    other order works). Loading it first lets TF and torch share one process.
    """
    import importlib.util

    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


def tf_available() -> bool:
    """True when TensorFlow can be imported (without importing it twice)."""
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None
