"""The TensorFlow counterpart of harness_overhead.bare_loop: a job's training steps with nothing
around them, to time against the same job through replicate/runner/tf_loop.py.

The step does the recipe's own arithmetic through the TF loop's own function
(``torch_style_gradients``: torch's coupled L2 decay, the global-norm clip), since those belong
to the model's recipe, not to the harness. It leaves out what the harness adds: the NaN guard,
the curve, checkpoints, heartbeats, the progress bar and the distribution strategy's wrapper.
"""

from __future__ import annotations

import time
from typing import Any

from replicate.resolved import make_spec
from replicate.runner.batch_order import BatchOrder
from replicate.runner.optim import lr_factor, scaled_lr, total_steps
from replicate.runner.tf_loop import build_tf_optimizer, torch_style_gradients
from replicate.runner.worker import build_task
from replicate.scheduling.resources import job_threads
from replicate.tf_import import tensorflow


def bare_tf_loop(cfg: Any) -> float:
    """Seconds of the training loop only."""
    tf = tensorflow(job_threads(cfg))
    spec = make_spec(cfg, None)
    task = build_task(spec, cfg)
    tf.keras.utils.set_random_seed(int(cfg.seed))
    if cfg.tier.get("deterministic"):
        tf.config.experimental.enable_op_determinism()
    task.prepare_data()
    recipe = cfg.model.tiers[cfg.tier.name].recipe
    model = task.build_model(spec.variant)
    data = task.build_dataset(cfg.model.tiers[cfg.tier.name].train_split, train=True)
    steps, per_unit = total_steps(recipe, len(data), 1.0)
    lr, _ = scaled_lr(recipe)
    optimizer = build_tf_optimizer(tf, recipe, lr)
    variables = model.trainable_variables
    optimizer.build(variables)

    def step(arrays: dict[str, Any]) -> Any:
        with tf.GradientTape() as tape:
            loss = task.training_step(model, arrays)["loss"]
        optimizer.apply_gradients(zip(torch_style_gradients(tf, recipe, tape.gradient(loss, variables), variables),
                                      variables))
        return loss

    compiled = tf.function(step, autograph=False, reduce_retracing=True)
    order = BatchOrder(len(data), int(cfg.seed), recipe.batch_size)   # the TF loop's batches
    began, done, epoch = time.perf_counter(), 0, 0
    while done < steps:
        batches, epoch = order.epoch(epoch), epoch + 1
        for indices in batches:
            arrays = task.collate([data[j] for j in indices])[0]
            optimizer.learning_rate.assign(lr * lr_factor(done, steps, per_unit, recipe))
            compiled({k: tf.convert_to_tensor(v) for k, v in arrays.items()})
            done += 1
            if done == steps:
                break
    return time.perf_counter() - began
