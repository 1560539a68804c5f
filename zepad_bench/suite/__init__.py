"""Declarative TOML suites: read, validate before any work, and expand the grid into cells.

``reading`` (file → TOML tables), ``schema`` (sections, keys, types, budgets, references, grid axes),
``paths`` (relative paths against the suite's folder), ``plugin_modules`` (``[suite] plugins``),
``plugin_tables`` (tables → checked plugin objects), ``protocol`` (``[suite] protocol``), ``grid``
(axes → cells), ``model`` (the validated :class:`Suite`) and ``load`` (:func:`load_suite`, in order).
"""

from zepad_bench.suite.grid import GRID_AXES, TUNE_ON_TASK, Cell
from zepad_bench.suite.load import load_suite
from zepad_bench.suite.model import PluginSpec, Suite
from zepad_bench.suite.plugin_tables import construct, instantiate
from zepad_bench.suite.schema import FETCHED, KIND_OF, RESERVED, SECTIONS, parse_eps

__all__ = [
    "FETCHED",
    "GRID_AXES",
    "KIND_OF",
    "RESERVED",
    "SECTIONS",
    "TUNE_ON_TASK",
    "Cell",
    "PluginSpec",
    "Suite",
    "construct",
    "instantiate",
    "load_suite",
    "parse_eps",
]
