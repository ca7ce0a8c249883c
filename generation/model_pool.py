"""A worker's warm pool: the models it has loaded, kept within a memory budget.

A render worker serving several collections loads a diffusion pipeline and a CLIP model for
each. :data:`POOL` keeps the most recently used ones while the bytes of their torch parameters
and buffers fit in the budget (``RENDER_MODEL_MEMORY_MB``; 0, the default, is no limit). One
budget for renderers and CLIP scorers together: both sit on the same device, and the operator
sizes that device's memory, not each kind's. On a miss the pool loads the model, then evicts
least-recently-used entries until the total fits. The model just loaded is never evicted: one
larger than the whole budget is loaded and kept alone, with a warning.

Eviction drops the pool's reference only. A thread still holding an evicted model (a render in
progress) keeps it alive and usable; Python frees it when the last holder lets go (reference
counting), so for that while the process holds more than the budget. A request after eviction
loads the model again.

Loads happen under the pool's lock, so two threads asking for the same model load it once; a
request for another model waits for that load (as the per-model caches before the pool did).

Each load, hit and eviction is told to the subscribers (:func:`subscribe`); the web app
subscribes the Prometheus counters (mintsite/observability/metrics.py).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:  # the web tier imports this module (for the metrics) and never loads torch
    import torch

log = logging.getLogger(__name__)

MB = 1024 * 1024


class Pooled(Protocol):
    def memory_bytes(self) -> int: ...


T = TypeVar("T", bound=Pooled)


def module_bytes(modules: Iterable[torch.nn.Module]) -> int:
    """Bytes of the parameters and buffers of ``modules``, each tensor counted once (modules of
    one pipeline may share weights). A module run by onnxruntime (generation/onnx_runtime.py)
    has no parameters; its ``onnx_bytes``, the size of the weights its session holds, counts."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        total += int(getattr(module, "onnx_bytes", 0))
        for tensor in (*module.parameters(), *module.buffers()):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


@dataclass(frozen=True)
class PoolEvent:
    kind: str  # "renderer" or "clip"
    action: str  # "load", "hit" or "evict"
    held_bytes: int  # bytes the pool holds of this kind after the event


Subscriber = Callable[[PoolEvent], None]


@dataclass
class _Entry:
    kind: str
    value: Pooled
    size: int


class ModelPool:
    """Loaded models by key, least recently used first, within ``budget_bytes`` (0: no limit)."""

    def __init__(self, budget_bytes: int = 0) -> None:
        if budget_bytes < 0:
            raise ValueError(f"a model pool's budget cannot be negative, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Have ``subscriber`` called with every load, hit and eviction (once per function)."""
        with self._lock:
            if subscriber not in self._subscribers:
                self._subscribers.append(subscriber)

    def set_budget(self, budget_bytes: int) -> None:
        """Change the budget; entries beyond it are evicted now (the most recent one stays)."""
        if budget_bytes < 0:
            raise ValueError(f"a model pool's budget cannot be negative, got {budget_bytes}")
        with self._lock:
            self.budget_bytes = budget_bytes
            self._evict_to_fit(keep=next(reversed(self._entries), None))

    def get(self, kind: str, key: Hashable, load: Callable[[], T]) -> T:
        """The model under ``key``, loaded by ``load()`` on a miss; it becomes the most recent."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self._tell(PoolEvent(kind, "hit", self._held(kind)))
                hit: T = entry.value  # type: ignore[assignment]  # stored by a load of T
                return hit
            value = load()
            size = value.memory_bytes()
            self._entries[key] = _Entry(kind, value, size)
            self._tell(PoolEvent(kind, "load", self._held(kind)))
            if self.budget_bytes and size > self.budget_bytes:
                log.warning(
                    "%s %s needs %.0f MB, more than RENDER_MODEL_MEMORY_MB=%d: kept alone",
                    kind,
                    key,
                    size / MB,
                    self.budget_bytes // MB,
                )
            self._evict_to_fit(keep=key)
            return value

    def holds(self, value: object) -> bool:
        """Whether ``value`` is in the pool (not evicted)."""
        with self._lock:
            return any(entry.value is value for entry in self._entries.values())

    def held_bytes(self) -> int:
        with self._lock:
            return sum(entry.size for entry in self._entries.values())

    def clear(self) -> None:
        """Drop every model (holders keep theirs); nothing is reported."""
        with self._lock:
            self._entries.clear()

    def _held(self, kind: str) -> int:
        return sum(entry.size for entry in self._entries.values() if entry.kind == kind)

    def _evict_to_fit(self, keep: Hashable | None) -> None:
        if not self.budget_bytes:
            return
        total = sum(entry.size for entry in self._entries.values())
        for key in list(self._entries):  # least recently used first
            if total <= self.budget_bytes:
                break
            if key == keep:
                continue
            entry = self._entries.pop(key)
            total -= entry.size
            log.info("evicted %s %s (%.0f MB) from the warm pool", entry.kind, key, entry.size / MB)
            self._tell(PoolEvent(entry.kind, "evict", self._held(entry.kind)))

    def _tell(self, event: PoolEvent) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:  # counting must never break a render
                log.exception("model pool subscriber %r failed on %s", subscriber, event)


#: This process's pool of renderers and CLIP scorers (``get_renderer``, ``get_scorer``).
POOL = ModelPool()
