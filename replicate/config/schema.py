"""Structured schema of the configs: types and required keys, checked by OmegaConf.

Semantic rules that types cannot express (allowed values, ranges, cross-references) live in
``validate.py``. Field names here are the keys users write in ``conf/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Optional

from omegaconf import MISSING


# The allowed values of the keys below: the one home of each list (validate.py checks against
# them, the code compares with their members). StrEnum members equal their strings, so configs
# keep plain strings and the config hashes do not change.
class Framework(StrEnum):
    TORCH = "torch"
    TENSORFLOW = "tensorflow"


class Optimizer(StrEnum):
    SGD = "sgd"
    ADAM = "adam"
    ADAMW = "adamw"


class Schedule(StrEnum):
    MULTISTEP = "multistep"
    LINEAR_DECAY = "linear_decay"
    CONSTANT = "constant"


class Precision(StrEnum):
    """The arithmetic a torch job trains and evaluates in (replicate/precision.py decides)."""

    FP32 = "fp32"
    AMP = "amp"      # fp16 autocast and a GradScaler, on CUDA only (a CPU job runs fp32)


class Direction(StrEnum):
    """Which way a metric is better."""

    HIGHER = "higher"
    LOWER = "lower"


class CompareWith(StrEnum):
    REFERENCE = "reference"
    CLAIM = "claim"
    REFERENCE_CURVE = "reference_curve"
    NONE = "none"   # calibration runs only


@dataclass
class ClaimConfig:
    """A published number this model must reproduce."""

    metric: str = MISSING            # key of the evaluator's output, e.g. bbox_AP
    value: float = MISSING
    split: str = MISSING             # e.g. val2017, test-dev2017, minival2014
    source: str = MISSING            # paper + table, or reference repo + file
    # paper | zoo (the reference repo's model zoo) | author (the authors' own measurement
    # outside the paper, e.g. in an issue) | third_party (a named, reputable third party's
    # measurement of the released weights; the source says how it was measured)
    kind: str = "paper"
    direction: str = "higher"        # higher | lower (which way is better)
    tolerance: float = 0.02          # inside the lab's range (LabConfig), else tolerance_reason says why
    tolerance_kind: str = "relative"  # relative | absolute
    # Why the tolerance departs from the lab's rule: relative outside lab.tolerance_range, or
    # absolute (always). Shown beside the claim; None: it does not depart.
    tolerance_reason: Optional[str] = None
    variant: Optional[str] = None    # None: the 'full' variant
    input_size: Optional[int] = None  # the resolution it was measured at; None: the tier's, whatever it is
    primary: bool = False
    # A number the measuring instrument must reproduce, not the model (pix2pix: the paper's FCN
    # on the real photos). Missed: the instrument is uncalibrated, the job INFRA, whatever the
    # model scored; never the primary claim.
    instrument: bool = False


@dataclass
class LabConfig:
    """The lab's policy for every claim (``lab:`` in conf/config.yaml, the one home of its numbers)."""

    # [low, high]: the relative tolerances a claim may have without saying why (the 1-3% rule).
    tolerance_range: list[float] = MISSING


@dataclass
class VariantConfig:
    """One architecture of a model family: the paper's full one or a small smoke variant."""

    description: str = ""
    arch: dict[str, Any] = field(default_factory=dict)   # builder arguments, model-specific
    trainable_params: Optional[int] = None
    params_source: Optional[str] = None


@dataclass
class RecipeConfig:
    """How to train: optimizer, schedule, batch. Units of milestones follow steps or epochs."""

    optimizer: str = "sgd"           # sgd | adam | adamw
    lr: float = MISSING
    momentum: float = 0.9
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    batch_size: int = MISSING        # per job (all its accelerators together)
    recipe_batch_size: Optional[int] = None  # the paper's batch: linear LR scaling reference
    steps: Optional[int] = None
    epochs: Optional[int] = None
    schedule: str = "multistep"      # multistep | linear_decay | constant
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    decay_start: Optional[float] = None  # linear_decay: where the decay begins (steps/epochs)
    warmup_steps: int = 0
    warmup_factor: float = 0.001
    # None: linear warm-up from warmup_factor; p: (step / warmup_steps) ** p, darknet's burn_in
    # (its [net] power, 4 by default)
    warmup_power: Optional[float] = None
    grad_clip: Optional[float] = None
    aspect_ratio_group_factor: Optional[int] = None  # batch images of similar shape (detection)
    # The reference's data-parallel processes, each grouping its DistributedSampler share of the
    # epoch alone (torchvision references: 8 GPUs x 2 images); None: one. Grouping only.
    sampler_processes: Optional[int] = None
    # Train only on images with a box wider and taller than 1 px, crowd included (torchvision
    # references' get_coco(image_set="train"): _coco_remove_images_without_annotations)
    skip_unannotated_images: bool = False
    # Crowd regions as training objects (CenterNet's ctdet sample reads every annotation)
    train_on_crowd: bool = False
    eval_every: Optional[int] = None     # steps between curve evaluations (None: early check + end)
    checkpoint_every: int = 100
    log_every: int = 10
    eval_batches: Optional[int] = None   # None: the whole val split
    extra: dict[str, Any] = field(default_factory=dict)  # model-specific loss weights etc.
    source: str = MISSING


@dataclass
class AlsoJudgedConfig:
    """A metric judged beside the primary one by the final verdict, from its own draws."""

    direction: str = "higher"
    draws: list[float] = field(default_factory=list)   # per calibration draw, in the draws' order


@dataclass
class ReferenceConfig:
    """A measured result of this implementation (smoke tier): calibration draws and their spread.

    The band is not stored: ``verdict.reference_band`` derives it from (value, spread, number of
    draws) and the tier's false-alarm rate, so calibrate, the loop and the report agree.
    """

    metric: str = MISSING
    value: float = MISSING           # mean of the final metric over the draws
    spread: float = MISSING          # sample std of the final metric over the draws
    draws: list[float] = field(default_factory=list)   # final metric per draw
    early_draws: list[float] = field(default_factory=list)  # metric at the early check, per draw
    early_loss_draws: list[float] = field(default_factory=list)  # training loss at the early check, per draw
    final_loss_draws: list[float] = field(default_factory=list)  # training loss, last quarter of the schedule
    early_drift_draws: list[float] = field(default_factory=list)  # ||w - w0|| / ||w0|| at the early check, per draw
    labels: list[str] = field(default_factory=list)    # per draw: seed/numeric variant/threads
    seeds: list[int] = field(default_factory=list)
    direction: str = "higher"
    source: str = MISSING            # command and date it was measured with
    curve: dict[str, float] = field(default_factory=dict)         # fraction of schedule -> mean
    curve_spread: dict[str, float] = field(default_factory=dict)  # fraction of schedule -> std
    # the tier's ``also_judged`` metrics, each with its own draws (calibrate records them)
    also: dict[str, AlsoJudgedConfig] = field(default_factory=dict)


@dataclass
class EvaluationReferenceConfig:
    """Fixed weights, trained once at calibration and shipped with the project, and what they
    scored through the evaluation path on the first ``images`` evaluation images under every
    numeric variant measured (replicate/runner/evaluation_reference.py). A smoke job scores them
    again through its own evaluation before training: evaluation alone, with no training noise,
    so a change of post-processing, preprocessing or scoring shows at once."""

    weights: str = MISSING            # file name under models/zoo_models/evaluation_weights/
    sha256: str = MISSING             # of that file
    dataset_hash: str = MISSING       # the data they were scored on (a job on other data is not judged)
    images: int = MISSING             # the first N images of the tier's evaluation split
    metrics: dict[str, float] = field(default_factory=dict)    # as measured under the first variant
    tolerance: dict[str, float] = field(default_factory=dict)  # per metric: the largest gap allowed
    labels: list[str] = field(default_factory=list)            # the numeric variants measured
    source: str = MISSING             # command and date it was measured with


@dataclass
class ReleasedCheckpointConfig:
    """The published checkpoint an eval tier scores: what a lab places under
    ``$ZOO_DATA_ROOT/checkpoints/`` (nothing is downloaded), and how to recognise it."""

    file: str = MISSING
    sha256_prefix: Optional[str] = None   # the publisher's hash in the file name; None: none published
    source: str = MISSING                 # where it is published (URL, weights enum)
    # where the lab places it: the datasets volume (read-only on the cluster), as the data sets
    directory: str = "${oc.env:ZOO_DATA_ROOT,/data}/checkpoints"


EVAL_PROTOCOLS = ("darknet", "omz_accuracy_checker")
OMZ_NMS_KINDS = ("nms", "diou_nms")


@dataclass
class TestOptionsConfig:
    """How the reference implementation tests, where it differs from training-time batching.

    Evaluation only; the model's task applies them (CenterNet: ``--keep_res`` and its results
    file's rounding; Darknet: letterbox or stretch).
    """

    # Each image at its own size, padded to the trunk's stride (CenterNet --keep_res); the
    # images of a batch then differ in size, so it needs eval_batch_size 1.
    keep_resolution: bool = False
    # Box coordinates and scores rounded to this many decimals, as the reference writes its
    # results file before COCOeval reads it (CenterNet: 2); None: unrounded.
    result_decimals: Optional[int] = None
    # Darknet: letterbox the evaluation images (pjreddie's validate_detector always does) or
    # stretch them; None: the cfg's [net] letter_box, AlexeyAB's rule (default: stretch).
    letter_box: Optional[bool] = None
    # YOLO: whose evaluation the tier restates, one of EVAL_PROTOCOLS: "darknet" (its detector
    # validation: letterbox or stretch, thresh 0.005, NMS 0.45; models/zoo_models/yolo/loss.py) or
    # "omz_accuracy_checker" (Open Model Zoo's accuracy checker, which measured the yolov3/yolov4
    # val2017 claims; models/zoo_models/yolo/omz_protocol.py); None: darknet.
    protocol: Optional[str] = None
    # omz_accuracy_checker: the checker config's NMS postprocessor, one of OMZ_NMS_KINDS
    nms: Optional[str] = None


@dataclass
class ModelTierConfig:
    """What one tier means for one model: variant, data, recipe, what it is compared with."""

    variant: str = MISSING
    data: str = MISSING              # a key of datasets
    train_split: str = "train"
    eval_split: str = "val"
    input_size: int = MISSING
    recipe: Optional[RecipeConfig] = None
    reference: Optional[ReferenceConfig] = None
    # Metrics the final verdict judges beside the reference's, each against the band of its own
    # calibration draws (metric -> higher | lower): pix2pix's layout score sees conditioning,
    # which L1 does not. calibrate records their draws in ``reference.also``.
    also_judged: dict[str, str] = field(default_factory=dict)
    # framework -> its own recorded reference (measured on that implementation); a job of that
    # framework compares with it instead of ``reference`` (which belongs to the first framework)
    framework_references: dict[str, ReferenceConfig] = field(default_factory=dict)
    # framework -> fixed weights and what they score through the evaluation path (smoke tier):
    # evaluation judged apart from training noise (replicate/runner/evaluation_reference.py)
    evaluation_references: dict[str, EvaluationReferenceConfig] = field(default_factory=dict)
    claim_split: Optional[str] = None  # the claim split this tier's eval split stands for
    # Images per evaluation batch; None: the recipe's batch size (8 without a recipe). Batching
    # pads images to the batch's largest, which a reference that evaluates one image at a time
    # does not do (torchvision's detection reference: 1).
    eval_batch_size: Optional[int] = None
    test: TestOptionsConfig = field(default_factory=TestOptionsConfig)
    # What this tier does differently from the reference implementation's recipe or evaluation,
    # one line each, shown beside its verdict; [] = none known. Required (validate.py) where the
    # tier is judged against a published claim: None means nobody has compared it yet.
    deviations: Optional[list[str]] = None
    released: Optional[ReleasedCheckpointConfig] = None   # eval tiers: the checkpoint they score
    # Training tiers: the pretrained trunk the reference recipe starts from (a lab's local file,
    # hash-checked; nothing is downloaded), and how many of its stages train (None: the variant's).
    backbone_weights: Optional[ReleasedCheckpointConfig] = None
    trainable_layers: Optional[int] = None
    # The instrument a tier's metric is measured with, where it is a network (pix2pix FCN-score:
    # the lab's Cityscapes segmenter, under $ZOO_DATA_ROOT/checkpoints; its hash is recorded).
    segmenter: Optional[ReleasedCheckpointConfig] = None
    # fp32 | amp (Precision). fp32 is every reference's: torchvision references/detection/train.py
    # (--amp is store_true, off by default; evaluate() in engine.py has no autocast), CenterNet
    # (src/main.py, src/test.py, base_trainer.py, base_detector.py: no autocast or half), darknet
    # (pjreddie: no half-precision path; AlexeyAB's Makefile: CUDNN_HALF=0) and pix2pix
    # (models/pix2pix_model.py: plain fp32 optimize_parameters). amp is a deviation, declared
    # beside the verdict on its own (replicate/precision.py), never listed by hand.
    precision: str = Precision.FP32


@dataclass
class ModelConfig:
    """A target model: registry name, frameworks, variants, claims, tiers."""

    name: str = MISSING
    paper: str = MISSING
    reference_impl: str = MISSING
    frameworks: list[str] = MISSING
    variants: dict[str, VariantConfig] = MISSING
    claims: list[ClaimConfig] = MISSING
    tiers: dict[str, ModelTierConfig] = MISSING


# Judge a run after a quarter of its training (the reengineering study's practice): the default
# early-check fraction, and the point calibration records its early draws at.
EARLY_FRACTION = 0.25


@dataclass
class EarlyCheckConfig:
    enabled: bool = True
    fraction: float = EARLY_FRACTION
    tolerance: float = 0.5


@dataclass
class TierConfig:
    name: str = MISSING
    trains: bool = MISSING
    compare_with: str = MISSING      # reference | claim | reference_curve
    schedule_fraction: float = 1.0
    early_check: EarlyCheckConfig = field(default_factory=EarlyCheckConfig)
    # Chance that a healthy job is flagged (early check + final band together) when compared
    # with a calibrated reference; 0.004 keeps a nightly 8-job smoke suite falsely red < once a month
    # (1 - 0.996^8 = 3.2% a night).
    false_alarm: float = 0.004
    # Fixed intra-op threads for every job of the tier (None: the CPUs the scheduler gives it).
    # A smoke result must not depend on the machine's core count or on the jobs beside it.
    num_threads: Optional[int] = None
    deterministic: bool = False      # torch/TF deterministic algorithms where they offer them


@dataclass
class RayResources:
    num_cpus: float = 1
    num_gpus: float = 0
    accelerator_type: Optional[str] = None
    resources: dict[str, float] = field(default_factory=dict)


@dataclass
class HardwareConfig:
    name: str = MISSING
    accelerator: str = MISSING       # cpu | gpu | tpu
    accelerator_name: Optional[str] = None
    count: int = MISSING
    price_per_accelerator_hour: float = MISSING
    price_source: str = MISSING
    currency: str = MISSING           # ISO 4217 code of the price (USD, EUR, ...)
    price_placeholder: bool = True    # the price is not yet the lab's own rate: every cost view says so
    ray: RayResources = field(default_factory=RayResources)
    node_selector: dict[str, str] = field(default_factory=dict)
    expected_images_per_s: Optional[float] = None


@dataclass
class SplitConfig:
    images: Optional[str] = None
    annotations: Optional[str] = None
    pairs: Optional[str] = None
    # The published split these files are, as claims name it (val2017, cityscapes_val): a tier
    # judged against a claim must evaluate the claim's own split. None: no published split.
    published_as: Optional[str] = None
    # Cityscapes: the split's gtFine folder (<city>/*_gtFine_labelIds.png), which the pix2pix
    # FCN-score reads its labels from, as the authors' protocol does.
    labels: Optional[str] = None


@dataclass
class DataConfig:
    name: str = MISSING
    kind: str = MISSING              # synthetic | coco | paired
    root: str = MISSING
    num_classes: int = 0
    image_size: int = 128
    num_train: int = 0
    num_val: int = 0
    max_objects: int = 3
    classes: list[str] = field(default_factory=list)
    seed: int = 0
    splits: dict[str, SplitConfig] = field(default_factory=dict)


@dataclass
class SuiteEntry:
    model: str = MISSING
    tier: str = MISSING
    hardware: str = MISSING
    seeds: list[int] = field(default_factory=lambda: [0])
    framework: Optional[str] = None
    overrides: list[str] = field(default_factory=list)
    # How often the entry must run: Nd or Nh (1d, 7d, 30d); None: every run. Inside its cadence a
    # job whose fingerprint equals a PASS's is UNCHANGED (replicate/scheduling/nightly.py).
    every: Optional[str] = None


@dataclass
class SuiteConfig:
    name: str = MISSING
    description: str = ""
    entries: list[SuiteEntry] = MISSING
    # Most a run of the suite may cost, in its hardware profiles' currency; None: no limit.
    budget: Optional[float] = None


@dataclass
class SchedulerConfig:
    _target_: str = MISSING
    address: Optional[str] = None
    max_retries: int = 2
    job_timeout_s: float = 7200
    deadline_margin: float = 3.0
    deadline_floor_s: float = 600
    deadline_history: int = 5
    autoscaling: bool = False
    num_cpus: Optional[int] = None


@dataclass
class StoreConfig:
    _target_: str = MISSING
    url: str = MISSING


@dataclass
class RootConfig:
    model: ModelConfig = MISSING
    tier: TierConfig = MISSING
    hardware: HardwareConfig = MISSING
    suite: SuiteConfig = MISSING
    scheduler: SchedulerConfig = MISSING
    store: StoreConfig = MISSING
    logger: dict[str, Any] = field(default_factory=dict)
    lab: LabConfig = field(default_factory=LabConfig)
    datasets: dict[str, DataConfig] = field(default_factory=dict)
    seed: int = 0
    framework: Optional[str] = None
    variant: Optional[str] = None
    checkpoint: Optional[str] = None
    results_dir: str = "results"
    suite_id: Optional[str] = None
    shuffle_labels: bool = False
    defect: Optional[str] = None     # a catalogue defect injected on purpose (replicate/defects)
    device: str = "auto"
    num_threads: Optional[int] = None
    # Data-parallel workers of a training job (Ray Train, DDP; replicate/runner/data_parallel.py).
    # None: one per GPU of a GPU profile, else 1 (one process, as every smoke job runs).
    workers: Optional[int] = None
    # fp32 | amp for every tier of the job (``precision=amp`` on the command line); None: the
    # tier's ``precision`` (replicate/config/selection.py: chosen_precision).
    precision: Optional[str] = None
