"""The defect catalogue, one module per family of implementations (plus ``recipe`` for defects
of the training recipe any model can have). Each module registers its defects with
``replicate.defects.registry.register``; the registry imports every module here.

Every defect is a mistake of the kind the reengineering study found (a hyperparameter, the data
pipeline, decoding, evaluation), most of them subtle. None is tuned to what the benchmark
catches: the catalogue measures the benchmark's power on defects its bands were not built from.
"""
