"""Helpers the catalogue injects defects with: each changes one object (a Task, a model, a
dataset, an evaluator) by replacing an attribute *of that instance*, never of its class or
module, so nothing leaks into another job run later by the same worker process."""

from __future__ import annotations

import functools
from typing import Any, Callable

from torch.utils.data import Dataset


def wrap(obj: Any, name: str, wrapper: Callable[..., Any]) -> None:
    """Replace ``obj.name`` by ``wrapper(original, *args, **kwargs)`` on this instance only."""
    original = getattr(obj, name)

    @functools.wraps(original)
    def patched(*args: Any, **kwargs: Any) -> Any:
        return wrapper(original, *args, **kwargs)

    setattr(obj, name, patched)


def after_build_model(task: Any, change: Callable[[Any], None]) -> None:
    """``change(model)`` on every model ``task.build_model`` returns (the loop's and the check's)."""

    def build(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        model = original(*args, **kwargs)
        change(model)
        return model

    wrap(task, "build_model", build)


def after_build_dataset(task: Any, change: Callable[[Any, bool], Any]) -> None:
    """``change(dataset, train) -> dataset`` on every dataset ``task.build_dataset`` returns."""

    def build(original: Callable[..., Any], split: str, *, train: bool) -> Any:
        return change(original(split, train=train), train)

    wrap(task, "build_dataset", build)


class MappedItems(Dataset):
    """A dataset whose items pass through ``fn``; other attributes are the inner dataset's."""

    def __init__(self, inner: Any, fn: Callable[[Any], Any]):
        self.inner, self.fn = inner, fn

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> Any:
        return self.fn(self.inner[index])

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "fn"):   # not set yet (unpickling): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.inner, name)
