"""The suite's shape: known sections and keys, value types, budgets, and the references between tables.

Each check raises a :class:`SuiteError` naming the file, the key and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zepad_bench.errors import SuiteError, UserError
from zepad_bench.interfaces import SCENARIOS
from zepad_bench.params import parse_budget
from zepad_bench.registry import Registry
from zepad_bench.reports.sections import SECTIONS as SECTIONS_OF_BOARD
from zepad_bench.suite.grid import GRID_AXES, TUNE_ON_TASK
from zepad_bench.suite.model import PluginSpec
from zepad_bench.suite.paths import resolve_paths

SECTIONS = ("suite", "datasets", "encoders", "attacks", "defenses", "tasks", "grid", "slurm")
RESERVED = {  # keys of plugin tables that the runner consumes (not passed to the plugin)
    "datasets": ("plugin", "download"),
    "encoders": ("plugin", "data", "auxiliaries"),
    "attacks": ("plugin", "data", "scenarios", "tasks"),
    "defenses": ("plugin",),
    "tasks": ("plugin", "data"),
}
KIND_OF = {
    "datasets": "datasets",
    "encoders": "encoders",
    "attacks": "attacks",
    "defenses": "defenses",
    "tasks": "tasks",
}
FETCHED = ("datasets", "encoders", "defenses")  # sections whose plugins may fetch() files (`run --download`)
SUITE_KEYS = {
    "name",
    "seed",
    "device",
    "image_size",
    "eps",
    "attacker_data",
    "batch_size",
    "plugins",
    "description",
    "precision",
    "adaptive_eps",
    "headline_eps",
    "protocol",
    "reports",
}
Tables = dict[str, dict[str, PluginSpec]]


def parse_eps(value: Any) -> float:
    """``"10/255"`` → 10/255; a number in (0, 1] → itself. Raises ``ValueError`` naming the rule broken."""
    return parse_budget(value)


def expect(path: Path, key: str, value: Any, types: type | tuple[type, ...], what: str) -> Any:
    """``value`` if it has one of ``types`` (a bool is not a number), else a :class:`SuiteError`."""
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise SuiteError(path, key, f"expected {what}, got {value!r}")
    if not isinstance(value, types):
        raise SuiteError(path, key, f"expected {what}, got {type(value).__name__} {value!r}")
    return value


def id_list(path: Path, key: str, value: Any) -> list:
    expect(path, key, value, list, "a list")
    if not value:
        raise SuiteError(path, key, "expected a non-empty list")
    return value


def _budget(path: Path, key: str, value: Any) -> float:
    try:
        return parse_eps(value)
    except ValueError as exc:
        raise SuiteError(path, key, str(exc)) from None


@dataclass(frozen=True)
class Head:
    """The ``[suite]`` table, checked (``attacker_data`` and ``protocol`` are checked where they are used)."""

    name: str
    seed: int
    device: str
    image_size: int
    batch_size: int
    precision: str
    eps: float
    adaptive_eps: list[float] | None
    headline_eps: float | None
    plugins: list[str]
    attacker_data: Any
    protocol: Any


def read_head(path: Path, raw: dict[str, Any]) -> Head:
    """Known sections only, then the ``[suite]`` table's keys and values."""
    for section in raw:
        if section not in SECTIONS:
            raise SuiteError(path, section, f"unknown section; expected one of {', '.join(SECTIONS)}")
    if "slurm" in raw:  # Slurm resources per phase (the Slurm executor reads them; checked here, up front)
        from zepad_bench.slurm_resources import suite_resources

        try:
            suite_resources(expect(path, "slurm", raw["slurm"], dict, "a [slurm] table"), "slurm")
        except UserError as exc:
            raise SuiteError(path, "", str(exc)) from None
    head = expect(path, "suite", raw.get("suite", {}), dict, "a [suite] table")
    for key in head:
        if key not in SUITE_KEYS:
            raise SuiteError(
                path, f"suite.{key}", f"unknown key; expected one of {', '.join(sorted(SUITE_KEYS))}"
            )
    name = expect(path, "suite.name", head.get("name", path.stem), str, "a string")
    seed = expect(path, "suite.seed", head.get("seed", 0), int, "an integer")
    device = expect(path, "suite.device", head.get("device", "auto"), str, "a string")
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise SuiteError(path, "suite.device", f"expected auto, cpu or cuda[:N], got {device!r}")
    image_size = expect(path, "suite.image_size", head.get("image_size", 32), int, "an integer")
    if not 8 <= image_size <= 512:
        raise SuiteError(path, "suite.image_size", f"expected 8..512, got {image_size}")
    batch_size = expect(path, "suite.batch_size", head.get("batch_size", 256), int, "an integer")
    precision = expect(path, "suite.precision", head.get("precision", "fp32"), str, "a string")
    if precision not in ("fp32", "bf16"):
        raise SuiteError(path, "suite.precision", f"expected fp32 or bf16, got {precision!r}")
    eps = _budget(path, "suite.eps", head.get("eps", "10/255"))
    adaptive_eps = None
    if "adaptive_eps" in head:
        values = id_list(path, "suite.adaptive_eps", head["adaptive_eps"])
        adaptive_eps = [_budget(path, "suite.adaptive_eps", v) for v in values]
    headline_eps = (
        _budget(path, "suite.headline_eps", head["headline_eps"]) if "headline_eps" in head else None
    )
    plugins = expect(path, "suite.plugins", head.get("plugins", []), list, "a list of module paths")
    for section in expect(path, "suite.reports", head.get("reports", []), list, "a list of section names"):
        if section not in SECTIONS_OF_BOARD:
            known = ", ".join(SECTIONS_OF_BOARD)
            message = f"unknown board section {section!r}; expected one of {known}"
            raise SuiteError(path, "suite.reports", message)
    return Head(
        name,
        seed,
        device,
        image_size,
        batch_size,
        precision,
        eps,
        adaptive_eps,
        headline_eps,
        list(plugins),
        head.get("attacker_data"),
        head.get("protocol"),
    )


def read_tables(
    path: Path, raw: dict[str, Any], registry: Registry, download: bool
) -> tuple[Tables, frozenset[str]]:
    """The named plugin tables (known plugin, reserved keys split off, relative paths resolved) and the
    tables to fetch first: with ``download`` every dataset and encoder, else datasets marked
    ``download = true``."""
    tables: Tables = {}
    downloads: set[str] = set()
    for section in RESERVED:
        tables[section] = {}
        entries = expect(path, section, raw.get(section, {}), dict, f"[{section}.<id>] tables")
        for id_, table in entries.items():
            key = f"{section}.{id_}"
            expect(path, key, table, dict, "a table")
            plugin = expect(path, f"{key}.plugin", table.get("plugin"), str, "a plugin name (string)")
            known = registry.kind(KIND_OF[section])
            if plugin not in known:
                raise SuiteError(path, f"{key}.plugin", registry.unknown(KIND_OF[section], plugin))
            reserved = {k: table[k] for k in RESERVED[section] if k in table and k != "plugin"}
            marked = section == "datasets" and expect(
                path, f"{key}.download", reserved.pop("download", False), bool, "true or false"
            )
            if marked or (download and section in FETCHED):
                downloads.add(key)
            params = {k: v for k, v in table.items() if k not in RESERVED[section]}
            params = resolve_paths(known[plugin], params, path.resolve().parent)
            tables[section][id_] = PluginSpec(id_, plugin, reserved, params)
    return tables, frozenset(downloads)


def _ref(path: Path, tables: Tables, key: str, value: Any, table: str) -> str:
    """``value`` if it is the id of a ``table`` entry, else a :class:`SuiteError` listing the known ids."""
    expect(path, key, value, str, f"a {table[:-1]} id")
    if value not in tables[table]:
        known = ", ".join(sorted(tables[table])) or "none"
        raise SuiteError(path, key, f"unknown {table[:-1]} id {value!r}; known: {known}")
    return value


def _scenarios(path: Path, key: str, values: list) -> None:
    for i, scenario in enumerate(values):
        if scenario not in SCENARIOS:
            raise SuiteError(path, f"{key}[{i}]", f"expected one of {', '.join(SCENARIOS)}, got {scenario!r}")


def check_references(path: Path, head: Head, tables: Tables) -> None:
    """Table keys that name other tables (``data``, ``auxiliaries``, ``attacker_data``, an attack's
    ``tasks``) and scenarios."""
    for section in ("encoders", "attacks", "tasks"):
        for id_, spec in tables[section].items():
            if "data" in spec.reserved:
                _ref(path, tables, f"{section}.{id_}.data", spec.reserved["data"], "datasets")
    for id_, spec in tables["encoders"].items():
        key = f"encoders.{id_}.auxiliaries"
        auxiliaries = spec.reserved.get("auxiliaries", [])
        for i, aux in enumerate(expect(path, key, auxiliaries, list, "a list of encoder ids")):
            _ref(path, tables, f"{key}[{i}]", aux, "encoders")
    for id_, spec in tables["attacks"].items():
        if "scenarios" in spec.reserved:
            key = f"attacks.{id_}.scenarios"
            _scenarios(path, key, id_list(path, key, spec.reserved["scenarios"]))
        if "tasks" in spec.reserved:
            key = f"attacks.{id_}.tasks"
            for i, task in enumerate(id_list(path, key, spec.reserved["tasks"])):
                _ref(path, tables, f"{key}[{i}]", task, "tasks")
    for id_, spec in tables["tasks"].items():
        if "data" not in spec.reserved:
            raise SuiteError(path, f"tasks.{id_}.data", "missing: the downstream dataset id of this task")
    if head.attacker_data is None and any("data" not in s.reserved for s in tables["attacks"].values()):
        raise SuiteError(
            path, "suite.attacker_data", "missing: the dataset id of the attacker's unlabeled data"
        )
    if head.attacker_data is not None:
        _ref(path, tables, "suite.attacker_data", head.attacker_data, "datasets")


def check_headline(path: Path, suite: Any) -> None:
    """``[suite] headline_eps`` (the budget the README ranks at) must be a budget the suite's cells run."""
    budgets = {round(c.eps, 12) for c in suite.cells()}
    if suite.headline_eps is not None and round(suite.headline_eps, 12) not in budgets:
        raise SuiteError(
            path,
            "suite.headline_eps",
            f"{suite.headline_eps * 255:g}/255 is no budget of the suite's cells "
            f"({', '.join(f'{e * 255:g}/255' for e in sorted(budgets))})",
        )


def read_grid(path: Path, raw: dict[str, Any], head: Head, tables: Tables) -> dict[str, list[Any]]:
    """The ``[grid]`` axes: ids of existing tables, scenarios, budgets, seeds; defaults filled in."""
    grid_raw = expect(path, "grid", raw.get("grid", {}), dict, "a [grid] table")
    for key in grid_raw:
        if key not in GRID_AXES:
            raise SuiteError(path, f"grid.{key}", f"unknown axis; expected one of {', '.join(GRID_AXES)}")
    defaults = {"scenarios": ["semi-black-box"], "eps": [head.eps], "seeds": [head.seed]}
    grid: dict[str, list[Any]] = {}
    for axis, table in GRID_AXES.items():
        key = f"grid.{axis}"
        if axis == "tuning" and grid_raw.get(axis) == TUNE_ON_TASK:
            grid[axis] = [TUNE_ON_TASK]
            continue
        if axis in grid_raw:
            values = id_list(path, key, grid_raw[axis])
        elif axis in defaults:
            values = defaults[axis]
        elif table and tables[table]:
            values = list(tables[table])
        else:
            raise SuiteError(path, key, f"missing: a list of {table or axis}")
        if table:
            values = [_ref(path, tables, f"{key}[{i}]", v, table) for i, v in enumerate(values)]
        elif axis == "scenarios":
            _scenarios(path, key, values)
        elif axis == "eps":
            values = [_budget(path, key, v) for v in values]
        elif axis == "seeds":
            values = [expect(path, f"{key}[{i}]", v, int, "an integer") for i, v in enumerate(values)]
        grid[axis] = values
    return grid
