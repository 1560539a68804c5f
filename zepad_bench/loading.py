"""Load a suite with CLI axis overrides: shared by the CLI and the executors' jobs (no import cycle)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zepad_bench.registry import Registry
    from zepad_bench.suite import Suite


def split_ids(value: str | None) -> list[str] | None:
    """``"a, b"`` → ``["a", "b"]``; ``None`` (axis not given) stays ``None``."""
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def load_with_axes(
    suite_path: str, axes: dict[str, str | None], download: bool = False, registry: Registry | None = None
) -> Suite:
    """Load and validate ``suite_path`` over ``registry`` (default: every installed plugin); ``axes``
    replace grid axes; ``download``: tables that ``run --download`` will fetch skip their path check."""
    from zepad_bench.registry import load_registry
    from zepad_bench.suite import load_suite

    suite = load_suite(suite_path, registry or load_registry(), download=download)
    return suite.with_axes(**{k: split_ids(v) for k, v in axes.items()})
