"""Where a defect enters a job: :func:`inject`, called once by ``runner.job.build_task``, which the
worker and ``replicate check`` both build their Task with."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from replicate.defects.registry import CONFIG_KEY, check_defect


def inject(task: Any, cfg: Any, framework: str) -> Any:
    """Apply the job's defect (``cfg.defect``) to ``task`` and ``cfg``; a no-op without one.

    A job that runs in another framework than torch gets the defect on the framework's twin
    (``task.framework_task(framework)``), and that same patched twin is what every later call
    of ``framework_task`` returns: the defect must reach the object whose steps run.

    Returns:
        ``task`` (changed in place).
    """
    name = cfg.get(CONFIG_KEY)
    if name is None:
        return task
    defect = check_defect(str(name), task.name, framework)
    if framework == "torch":
        defect.apply(task, cfg)
    else:
        twin, original = task.framework_task(framework), task.framework_task
        defect.apply(twin, cfg)
        task.framework_task = lambda wanted: twin if wanted == framework else original(wanted)
    task.injected_defect = defect.name
    return task


def defect_of(row: Mapping[str, Any]) -> Optional[str]:
    """The defect injected into a stored job (its recorded config's ``defect``), or None."""
    config = row.get("config") or {}
    return config.get(CONFIG_KEY) if isinstance(config, Mapping) else None
