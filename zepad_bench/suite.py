"""Declarative TOML suites: parse, validate before any work, and expand the grid into cells."""

from __future__ import annotations

import inspect
import itertools
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import tomllib

from zepad_bench.errors import SuiteError, UserError
from zepad_bench.registry import Registry

SECTIONS = ("suite", "datasets", "encoders", "attacks", "defenses", "tasks", "grid")
SCENARIOS = ("semi-black-box", "white-box")
RESERVED = {  # keys of plugin tables that the runner consumes (not passed to the plugin)
    "datasets": ("plugin",),
    "encoders": ("plugin", "data", "auxiliaries"),
    "attacks": ("plugin", "data"),
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
GRID_AXES = {  # axis → (table its values refer to, or None)
    "victims": "encoders",
    "scenarios": None,
    "attacks": "attacks",
    "eps": None,
    "defenses": "defenses",
    "tuning": "datasets",
    "tasks": "tasks",
    "seeds": None,
}
TUNE_ON_TASK = "task"  # `[grid] tuning = "task"`: each cell tunes on its own task's dataset (D_f = D_d)
CLI_AXES = ("victims", "scenarios", "attacks", "defenses", "tuning", "tasks")


def parse_eps(value: Any) -> float:
    """``"10/255"`` → 10/255; a number in (0, 1] → itself. Raises ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError('a number or a fraction string like "10/255"')
    if isinstance(value, (int, float)):
        eps = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*(/\s*\d+(\.\d+)?\s*)?", value):
        try:
            eps = float(Fraction(value.replace(" ", "")))
        except ZeroDivisionError:
            raise ValueError("a fraction with a non-zero denominator") from None
    else:
        raise ValueError(f'a number or a fraction string like "10/255", got {value!r}')
    if not 0 < eps <= 1:
        raise ValueError(f"a budget in (0, 1] pixel units, got {value!r}")
    return eps


@dataclass(frozen=True)
class PluginSpec:
    """One named table: its id, plugin name, the runner's reserved keys and the plugin's params."""

    id: str
    plugin: str
    reserved: dict[str, Any]
    params: dict[str, Any]

    def resolved(self) -> dict[str, Any]:
        return {"plugin": self.plugin, **self.reserved, "params": self.params}


@dataclass(frozen=True)
class Cell:
    """One grid point: victim × scenario × attack × eps × defense × D_f × task × seed."""

    victim: str
    scenario: str
    attack: str
    eps: float
    defense: str
    tuning: str
    task: str
    seed: int

    def label(self) -> str:
        return (
            f"{self.victim}/{self.scenario}/{self.attack}@{self.eps:.4f}/{self.defense}"
            f"/Df={self.tuning}/{self.task}/seed={self.seed}"
        )


@dataclass
class Suite:
    path: Path
    name: str
    seed: int
    device: str
    image_size: int
    eps: float
    attacker_data: str
    batch_size: int
    plugins: list[str]
    tables: dict[str, dict[str, PluginSpec]]
    grid: dict[str, list[Any]]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    registry: Registry | None = field(repr=False, default=None)

    def spec(self, kind: str, id_: str) -> PluginSpec:
        return self.tables[kind][id_]

    def cells(self) -> list[Cell]:
        """The grid's product; with ``tuning = "task"`` each cell tunes on its task's dataset (D_f = D_d)."""
        g = self.grid
        cells = []
        for victim, scenario, attack, eps, defense, tune, task, seed in itertools.product(
            g["victims"],
            g["scenarios"],
            g["attacks"],
            g["eps"],
            g["defenses"],
            g["tuning"],
            g["tasks"],
            g["seeds"],
        ):
            if tune == TUNE_ON_TASK:
                tune = self.spec("tasks", task).reserved["data"]
            cells.append(Cell(victim, scenario, attack, eps, defense, tune, task, seed))
        return cells

    def auxiliaries(self, victim: str) -> list[str]:
        return list(self.spec("encoders", victim).reserved.get("auxiliaries", []))

    def surrogates(self, victim: str, scenario: str) -> list[str]:
        """Public encoders the attacker crafts on: the victim, plus its auxiliaries in white-box."""
        return [victim] + (self.auxiliaries(victim) if scenario == "white-box" else [])

    def with_axes(self, **axes: list[str] | None) -> Suite:
        """Replace grid axes by the given ids (CLI ``--attacks a,b`` …), validated."""
        grid = dict(self.grid)
        for axis, ids in axes.items():
            if ids is None:
                continue
            table = GRID_AXES[axis]
            for id_ in ids:
                if table and id_ not in self.tables[table]:
                    known = ", ".join(sorted(self.tables[table]))
                    raise UserError(
                        f"--{axis}: unknown {table[:-1]} id {id_!r} in {self.path}; known: {known}"
                    )
                if axis == "scenarios" and id_ not in SCENARIOS:
                    raise UserError(f"--scenarios: unknown scenario {id_!r}; known: {', '.join(SCENARIOS)}")
            grid[axis] = list(ids)
        return Suite(**{**self.__dict__, "grid": grid})


def _expect(path: Path, key: str, value: Any, types: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise SuiteError(path, key, f"expected {what}, got {value!r}")
    if not isinstance(value, types):
        raise SuiteError(path, key, f"expected {what}, got {type(value).__name__} {value!r}")
    return value


def _id_list(path: Path, key: str, value: Any) -> list:
    _expect(path, key, value, list, "a list")
    if not value:
        raise SuiteError(path, key, "expected a non-empty list")
    return value


def load_suite(path: str | Path, registry: Registry) -> Suite:
    """Parse and fully validate a suite: names, types, budgets, references, plugin params, data paths."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such suite file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(path, "", f"TOML syntax error: {exc}") from None
    for section in raw:
        if section not in SECTIONS:
            raise SuiteError(path, section, f"unknown section; expected one of {', '.join(SECTIONS)}")
    head = _expect(path, "suite", raw.get("suite", {}), dict, "a [suite] table")
    known_suite_keys = {
        "name",
        "seed",
        "device",
        "image_size",
        "eps",
        "attacker_data",
        "batch_size",
        "plugins",
        "description",
        "protocol",
    }
    for key in head:
        if key not in known_suite_keys:
            raise SuiteError(
                path, f"suite.{key}", f"unknown key; expected one of {', '.join(sorted(known_suite_keys))}"
            )
    name = _expect(path, "suite.name", head.get("name", path.stem), str, "a string")
    seed = _expect(path, "suite.seed", head.get("seed", 0), int, "an integer")
    device = _expect(path, "suite.device", head.get("device", "auto"), str, "a string")
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise SuiteError(path, "suite.device", f"expected auto, cpu or cuda[:N], got {device!r}")
    image_size = _expect(path, "suite.image_size", head.get("image_size", 32), int, "an integer")
    if not 8 <= image_size <= 512:
        raise SuiteError(path, "suite.image_size", f"expected 8..512, got {image_size}")
    batch_size = _expect(path, "suite.batch_size", head.get("batch_size", 256), int, "an integer")
    try:
        eps = parse_eps(head.get("eps", "10/255"))
    except ValueError as exc:
        raise SuiteError(path, "suite.eps", f"expected {exc}") from None
    plugins = _expect(path, "suite.plugins", head.get("plugins", []), list, "a list of module paths")
    if plugins:
        from zepad_bench.registry import load_registry

        try:
            registry = load_registry(tuple(plugins))
        except UserError as exc:
            raise SuiteError(path, "suite.plugins", str(exc)) from None

    tables: dict[str, dict[str, PluginSpec]] = {}
    for section in RESERVED:
        tables[section] = {}
        entries = _expect(path, section, raw.get(section, {}), dict, f"[{section}.<id>] tables")
        for id_, table in entries.items():
            key = f"{section}.{id_}"
            _expect(path, key, table, dict, "a table")
            plugin = _expect(path, f"{key}.plugin", table.get("plugin"), str, "a plugin name (string)")
            known = registry.kind(KIND_OF[section])
            if plugin not in known:
                raise SuiteError(
                    path,
                    f"{key}.plugin",
                    f"unknown {section[:-1]} plugin {plugin!r}; known: {', '.join(sorted(known)) or 'none'}",
                )
            reserved = {k: table[k] for k in RESERVED[section] if k in table and k != "plugin"}
            params = {k: v for k, v in table.items() if k not in RESERVED[section]}
            tables[section][id_] = PluginSpec(id_, plugin, reserved, params)

    def ref(key: str, value: Any, table: str) -> str:
        _expect(path, key, value, str, f"a {table[:-1]} id")
        if value not in tables[table]:
            raise SuiteError(
                path,
                key,
                f"unknown {table[:-1]} id {value!r}; known: {', '.join(sorted(tables[table])) or 'none'}",
            )
        return value

    for section in ("encoders", "attacks", "tasks"):
        for id_, spec in tables[section].items():
            if "data" in spec.reserved:
                ref(f"{section}.{id_}.data", spec.reserved["data"], "datasets")
    for id_, spec in tables["encoders"].items():
        for i, aux in enumerate(
            _expect(
                path,
                f"encoders.{id_}.auxiliaries",
                spec.reserved.get("auxiliaries", []),
                list,
                "a list of encoder ids",
            )
        ):
            ref(f"encoders.{id_}.auxiliaries[{i}]", aux, "encoders")
    for id_, spec in tables["tasks"].items():
        if "data" not in spec.reserved:
            raise SuiteError(path, f"tasks.{id_}.data", "missing: the downstream dataset id of this task")
    attacker_data = head.get("attacker_data")
    if attacker_data is None and any("data" not in s.reserved for s in tables["attacks"].values()):
        raise SuiteError(
            path, "suite.attacker_data", "missing: the dataset id of the attacker's unlabeled data"
        )
    if attacker_data is not None:
        ref("suite.attacker_data", attacker_data, "datasets")

    grid_raw = _expect(path, "grid", raw.get("grid", {}), dict, "a [grid] table")
    for key in grid_raw:
        if key not in GRID_AXES:
            raise SuiteError(path, f"grid.{key}", f"unknown axis; expected one of {', '.join(GRID_AXES)}")
    defaults = {"scenarios": ["semi-black-box"], "eps": [eps], "seeds": [seed]}
    grid: dict[str, list[Any]] = {}
    for axis, table in GRID_AXES.items():
        key = f"grid.{axis}"
        if axis == "tuning" and grid_raw.get(axis) == TUNE_ON_TASK:
            grid[axis] = [TUNE_ON_TASK]
            continue
        if axis in grid_raw:
            values = _id_list(path, key, grid_raw[axis])
        elif axis in defaults:
            values = defaults[axis]
        elif table and tables[table]:
            values = list(tables[table])
        else:
            raise SuiteError(path, key, f"missing: a list of {table or axis}")
        if table:
            values = [ref(f"{key}[{i}]", v, table) for i, v in enumerate(values)]
        elif axis == "scenarios":
            for i, v in enumerate(values):
                if v not in SCENARIOS:
                    raise SuiteError(
                        path, f"{key}[{i}]", f"expected one of {', '.join(SCENARIOS)}, got {v!r}"
                    )
        elif axis == "eps":
            try:
                values = [parse_eps(v) for v in values]
            except ValueError as exc:
                raise SuiteError(path, key, f"expected {exc}") from None
        elif axis == "seeds":
            values = [_expect(path, f"{key}[{i}]", v, int, "an integer") for i, v in enumerate(values)]
        grid[axis] = values

    _apply_protocol(path, head, tables["defenses"], registry)
    suite = Suite(
        path,
        name,
        seed,
        device,
        image_size,
        eps,
        attacker_data,
        batch_size,
        list(plugins),
        tables,
        grid,
        raw,
        registry,
    )
    for section, entries in tables.items():
        for id_ in entries:
            instantiate(suite, registry, section, id_, eps=grid["eps"][0]).check()
    return suite


def _apply_protocol(path: Path, head: dict, defenses: dict[str, PluginSpec], registry: Registry) -> None:
    """``[suite] protocol`` ("authors" | "corrected"): the default ``protocol`` param of every defense
    that takes one; a defense table's own ``protocol`` wins."""
    if "protocol" not in head:
        return
    protocol = head["protocol"]
    if protocol not in ("authors", "corrected"):
        raise SuiteError(path, "suite.protocol", f"expected 'authors' or 'corrected', got {protocol!r}")
    for spec in defenses.values():
        mro = registry.get("defenses", spec.plugin).__mro__
        if any("protocol" in inspect.signature(k.__init__).parameters for k in mro if "__init__" in vars(k)):
            spec.params.setdefault("protocol", protocol)


def instantiate(suite: Suite, registry: Registry, section: str, id_: str, eps: float | None = None):
    """Create the plugin object of table ``section.id_``; bad params become a :class:`SuiteError`."""
    spec = suite.spec(section, id_)
    cls = registry.get(KIND_OF[section], spec.plugin)
    try:
        return cls(eps, **spec.params) if section == "attacks" else cls(**spec.params)
    except TypeError as exc:
        accepted = dict.fromkeys(
            p
            for klass in cls.__mro__
            if "__init__" in vars(klass) and klass.__module__ != "zepad_bench.interfaces"
            for p, kind in inspect.signature(klass.__init__).parameters.items()
            if p not in ("self", "eps") and kind.kind not in (kind.VAR_KEYWORD, kind.VAR_POSITIONAL)
        )
        raise SuiteError(
            suite.path,
            f"{section}.{id_}",
            f"bad parameters for plugin {spec.plugin!r}: {exc}; accepted: {', '.join(accepted) or 'none'}",
        ) from None
    except ValueError as exc:
        raise SuiteError(
            suite.path, f"{section}.{id_}", f"bad parameters for plugin {spec.plugin!r}: {exc}"
        ) from None
