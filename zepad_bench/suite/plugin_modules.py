"""``[suite] plugins``: modules a suite loads ad hoc, looked up beside the suite file first."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zepad_bench.errors import SuiteError, UserError
from zepad_bench.registry import Registry, load_registry
from zepad_bench.suite.reading import read_toml
from zepad_bench.suite.schema import read_head


@contextmanager
def importable_from(folder: Path) -> Iterator[None]:
    """Let ``[suite] plugins`` modules be found beside the suite file (then on the Python path)."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def with_suite_plugins(path: Path, modules: list[str], registry: Registry) -> Registry:
    """``registry``, or every installed plugin plus ``modules`` when the suite names any; a module
    that cannot load is an error of the suite's ``suite.plugins`` key."""
    if not modules:
        return registry
    folder = path.resolve().parent
    try:
        with importable_from(folder):
            return load_registry(tuple(modules))
    except UserError as exc:
        raise SuiteError(path, "suite.plugins", f"{exc} (searched {folder} first)") from None


def suite_registry(path: str | Path, registry: Registry) -> Registry:
    """The plugins a suite file sees: ``registry`` plus its ``[suite] plugins`` modules (found beside it
    first), without validating the rest of the suite (``check-plugin --suite``)."""
    path = Path(path)
    return with_suite_plugins(path, read_head(path, read_toml(path)).plugins, registry)
