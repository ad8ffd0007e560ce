"""The harness's defects: mistakes of a training recipe that any model can have, in any zoo
(``recipe``). A zoo's own defects (of its models' decoding, targets, augmentation) live in its
``defects`` package (replicate/zoo/installed.py). Each module registers its defects with
``replicate.defects.registry.register``; the registry imports every module here and in each zoo's.

Every defect is a mistake of the kind the reengineering study found (a hyperparameter, the data
pipeline, decoding, evaluation), most of them subtle. None is tuned to what the benchmark
catches: the catalogue measures the benchmark's power on defects its bands were not built from.
"""
