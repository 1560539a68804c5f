"""Run context handed to plugins: device, seed, progress reporting and per-cell records."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from zepad_bench.errors import UserError

T = TypeVar("T")


@dataclass
class RunContext:
    """What the runner tells a plugin before it works. Defaults suit direct use in a notebook."""

    device: str = "cpu"
    seed: int = 0
    image_size: int = 32
    progress: Any = None  # a rich.progress.Progress, or None for silence
    records: dict[str, Any] = field(default_factory=dict)
    on_record: Callable[[str, Any], None] | None = None
    plugins: Callable[[str, str], type] | None = None
    """The suite's plugin classes by kind and name; see :meth:`plugin`."""

    def track(self, iterable: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate with a progress bar (when the runner shows progress)."""
        if self.progress is None:
            yield from iterable
            return
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        task = self.progress.add_task(description, total=total)
        try:
            for item in iterable:
                yield item
                self.progress.advance(task)
        finally:
            self.progress.remove_task(task)

    def generator(self, offset: int = 0):
        """A CPU ``torch.Generator`` seeded from the run's seed (+ ``offset`` for independent streams)."""
        import torch

        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)

    def plugin(self, kind: str, name: str) -> type:
        """The class of the suite's plugin ``name`` of ``kind`` (``"attacks"``, …), for a plugin that
        runs another itself (ZePAD's generator attack; list it in ``code_dependencies()`` too)."""
        if self.plugins is None:
            raise UserError(f"no plugin registry in this context to look up {kind[:-1]} plugin {name!r}")
        return self.plugins(kind, name)

    def record(self, name: str, value: Any) -> None:
        """Keep a per-cell array or value (e.g. per-sample confidences for plots)."""
        self.records[name] = value
        if self.on_record is not None:
            self.on_record(name, value)
