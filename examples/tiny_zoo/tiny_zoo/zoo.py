"""What this zoo offers the harness: its package (Tasks registered on import) and its configs."""

from pathlib import Path

from replicate.zoo.installed import ZooSpec

ZOO = ZooSpec(package="tiny_zoo", config_dir=Path(__file__).resolve().parent / "conf")
