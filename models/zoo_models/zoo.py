"""What this zoo offers the harness: the object ``models/pyproject.toml``'s entry point names."""

from pathlib import Path

from replicate.zoo.installed import ZooSpec

HERE = Path(__file__).resolve().parent

ZOO = ZooSpec(
    package="zoo_models",
    config_dir=HERE / "conf",
    defects="zoo_models.defects",
    evaluation_weights_dir=HERE / "evaluation_weights",
    commands=("zoo_models.commands.darknet",),
)
