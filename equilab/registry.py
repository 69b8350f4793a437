"""String-keyed registries: the seams through which configs pick models, data, tasks and products.

Choices saved inside checkpoints are short names (``egnn``, ``nbody``, ``cg``), never dotted
import paths, so a checkpoint stays loadable when code moves.

Examples:
    >>> from equilab.registry import Registry
    >>> R = Registry("widget")
    >>> @R.register("a")
    ... def make_a():
    ...     return 1
    >>> R.get("a")()
    1
"""
from __future__ import annotations

from typing import Callable, Dict, Generic, TypeVar

from equilab.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str, *, field: str | None = None) -> T:
        if name not in self._items:
            where = f" (config field `{field}`)" if field else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}{where}; choose one of: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def names(self):
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items


# The framework's seams. Modules register themselves on import (see equilab/__init__.py).
MODELS: Registry = Registry("model")  # name -> build(cfg: dict, data) -> flax Module
DATASETS: Registry = Registry("dataset")  # name -> build(cfg: dict, data_dir: str) -> DataModule
TASKS: Registry = Registry("task")  # name -> build(cfg: dict, data) -> Task
TP_METHODS: Registry = Registry("tensor-product method")  # name -> f(x1, x2, *, irreps_out, ...)
SH_TP_METHODS: Registry = Registry("feature x spherical-harmonics product method")
