"""Every value a job would reject mid-run is refused before scheduling: exit 2, one line naming
the key. One case per class of bad value (range, finiteness, consistency, path, device, id)."""

from __future__ import annotations

import pytest

from replicate.cli import main
from replicate.config.compose import compose_config
from replicate.errors import ConfigError

R = "model.tiers.smoke.recipe"
BAD = {
    # ranges
    "seed above what numpy seeds": (["seed=1099511627776"], "seed: 1099511627776 is outside [0, 2147483647]"),
    "threads negative": (["num_threads=-1"], "num_threads: -1 must be >= 1"),
    "input size zero": (["model.tiers.smoke.input_size=0"], "model.tiers.smoke.input_size: 0 must be > 0"),
    "log every zero": ([f"{R}.log_every=0"], f"{R}.log_every: 0 must be > 0"),
    "eval batches zero": ([f"{R}.eval_batches=0"], f"{R}.eval_batches: 0 must be > 0"),
    "momentum one": ([f"{R}.momentum=1.0"], f"{R}.momentum: 1.0 is outside [0, 1)"),
    "negative warmup": ([f"{R}.warmup_steps=-5"], f"{R}.warmup_steps: -5 must be >= 0"),
    "no validation images": (["datasets.shapes.num_val=0"], "datasets.shapes.num_val: 0 must be > 0"),
    "schedule share above one": (["tier.schedule_fraction=1.5"], "tier.schedule_fraction: 1.5 is outside (0, 1]"),
    "relative results on a cluster": (["scheduler=kuberay", "results_dir=results"],
                                      "results_dir: 'results' is relative; with scheduler.address"),
    "negative retries": (["scheduler.max_retries=-1"], "scheduler.max_retries: -1 must be >= 0"),
    "zero job timeout": (["scheduler.job_timeout_s=0"], "scheduler.job_timeout_s: 0.0 must be > 0"),
    "negative GPUs": (["hardware.ray.num_gpus=-1"], "hardware.ray.num_gpus: -1.0 must be >= 0"),
    # finiteness
    "lr infinite": ([f"{R}.lr=inf"], f"{R}.lr: inf is not a finite number"),
    "lr nan": ([f"{R}.lr=nan"], f"{R}.lr: nan is not a finite number"),
    "weight decay infinite": ([f"{R}.weight_decay=inf"], f"{R}.weight_decay: inf is not a finite number"),
    # consistency
    "batch larger than the data": (["datasets.shapes.num_train=3"],
                                   f"{R}.batch_size: 4 is larger than the 3 training images of datasets.shapes"),
    "batch not split over sampling processes": ([f"{R}.sampler_processes=3"],
                                                f"{R}.sampler_processes: batch_size 4 does not split evenly over 3"),
    "suite lists a seed twice": (["suite.entries.0.seeds=[0,0]"], "suite.entries[0].seeds: seed(s) [0] listed twice"),
    "suite lists an entry twice": (["suite=smoke", "suite.entries.1.model=faster_rcnn"],
                                   "suite.entries[1]: repeats suite.entries[0]"),
    "empty suite": (["suite.entries=[]"], "suite.entries: empty"),
    "final losses not one per draw": (["model=yolov4", "model.tiers.smoke.reference.final_loss_draws=[1.0,2.0]"],
                                      "model.tiers.smoke.reference.final_loss_draws: one final training loss per draw"),
    "suite seed out of range": (["suite.entries.0.seeds=[-1]"], "suite.entries[0].seeds[0]: -1 is outside"),
    # paths
    "checkpoint missing": (["checkpoint=/no/such/weights.pt"], "checkpoint: /no/such/weights.pt does not exist"),
    "checkpoint a folder": (["checkpoint=/tmp"], "checkpoint: /tmp is not a regular file"),
    # ids
    "suite id escapes results": (["suite_id=.."], "suite_id: '..': allowed: 1-100 characters"),
    "suite id with a slash": (["suite_id=a/b"], "suite_id: 'a/b': allowed"),
    "suite id too long": ([f"suite_id={'x' * 300}"], "suite_id: 'xxxx"),
    # code named by a config
    "a callable as the store": (["store._target_=os.system"], "store._target_: 'os.system': only classes"),
    "a callable as the scheduler": (["scheduler._target_=subprocess.call"], "scheduler._target_: 'subprocess.call'"),
    "a package class that is no store": (["store._target_=replicate.scheduling.inline_scheduler.InlineScheduler"],
                                        "store._target_: InlineScheduler is not a JobStore"),
    "a package class that cannot be built": (["store._target_=replicate.jobs.JobSpec"],
                                             "store._target_: 'replicate.jobs.JobSpec' cannot be built"),
    # unknown keys
    "added key at the root": (["+foo=1"], "foo: no such key in the config"),
    "added key in a typed section": ([f"+{R}.stepz=3"], f"{R}.stepz: no such key in the config"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_exits_2_before_anything_runs_with_one_line_naming_the_key(name, capsys, tmp_path):
    overrides, expected = BAD[name]
    code = main(["run", "model=faster_rcnn", f"results_dir={tmp_path}", *overrides])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "zoo.db").exists()   # refused before the store or any job


def test_a_device_this_machine_lacks_is_refused_unless_a_cluster_runs_the_job():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="device: cuda: this machine has no CUDA GPU"):
        compose_config(["model=yolov4", "device=cuda"])
    # on a cluster the workers decide
    compose_config(["model=yolov4", "device=cuda", "scheduler=kuberay", "results_dir=/results"])


def test_open_sections_still_take_added_keys():
    cfg = compose_config(["model=yolov4", f"+{R}.extra.flip=false", "+logger.tags.night=1",
                          "+hardware.node_selector.pool=a100"])
    assert cfg.model.tiers.smoke.recipe.extra.flip is False and cfg.hardware.node_selector.pool == "a100"


def test_an_empty_checkpoint_file_is_refused(tmp_path):
    empty = tmp_path / "w.pt"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError, match=f"checkpoint: {empty} is empty"):
        compose_config(["model=yolov4", f"checkpoint={empty}"])
