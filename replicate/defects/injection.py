"""Where a defect enters a job: :func:`inject`, called once by ``runner.worker.build_task``, which the
worker and ``replicate check`` both build their Task with."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from replicate.defects.registry import CONFIG_KEY, check_defect


def inject(task: Any, cfg: Any, framework: str) -> Any:
    """Apply the job's defect (``cfg.defect``) to ``task`` and ``cfg``; a no-op without one.

    ``task`` is the registered implementation of the job's framework: the object whose steps run.

    Returns:
        ``task`` (changed in place).
    """
    name = cfg.get(CONFIG_KEY)
    if name is None:
        return task
    defect = check_defect(str(name), task.name, framework)
    defect.apply(task, cfg)
    task.injected_defect = defect.name
    return task


def defect_of(row: Mapping[str, Any]) -> Optional[str]:
    """The defect injected into a stored job (its recorded config's ``defect``), or None."""
    config = row.get("config") or {}
    return config.get(CONFIG_KEY) if isinstance(config, Mapping) else None
