"""Declarative TOML suites: parse, validate before any work, and expand the grid into cells."""

from __future__ import annotations

import itertools
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import tomllib

from zepad_bench.errors import SuiteError, UserError
from zepad_bench.interfaces import SCENARIOS
from zepad_bench.registry import Registry

SECTIONS = ("suite", "datasets", "encoders", "attacks", "defenses", "tasks", "grid")
RESERVED = {  # keys of plugin tables that the runner consumes (not passed to the plugin)
    "datasets": ("plugin", "download"),
    "encoders": ("plugin", "data", "auxiliaries"),
    "attacks": ("plugin", "data", "scenarios"),
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
FETCHED = ("datasets", "encoders", "defenses")  # sections whose plugins may fetch() files (`run --download`)
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
    download: frozenset[str] = frozenset()  # "<section>.<id>" tables to fetch first (never in any key)
    precision: str = "fp32"  # "bf16": backbones under bf16 autocast (zepad_bench.nn.precision)
    adaptive_eps: list[float] | None = None
    """``[suite] adaptive_eps``: the ε list of ``adaptive`` cells (RA-vs-ε curves); else the grid's."""
    scenario_filter: list[str] | None = None
    """``--scenarios`` on the CLI: only cells of these scenarios run."""

    def spec(self, kind: str, id_: str) -> PluginSpec:
        return self.tables[kind][id_]

    def cells(self) -> list[Cell]:
        """The grid's product; with ``tuning = "task"`` each cell tunes on its task's dataset (D_f = D_d)."""
        g = self.grid
        cells = []
        scenarios = list(dict.fromkeys(s for a in g["attacks"] for s in self.attack_scenarios(a)))
        for victim, scenario, attack in itertools.product(g["victims"], scenarios, g["attacks"]):
            if scenario not in self.attack_scenarios(attack):
                continue
            if self.scenario_filter is not None and scenario not in self.scenario_filter:
                continue
            cells += self._cells(victim, scenario, attack)
        return cells

    def _cells(self, victim: str, scenario: str, attack: str) -> list[Cell]:
        g, cells = self.grid, []
        eps_list = self.adaptive_eps if scenario == "adaptive" and self.adaptive_eps else g["eps"]
        for eps, defense, tune, task, seed in itertools.product(
            eps_list, g["defenses"], g["tuning"], g["tasks"], g["seeds"]
        ):
            if tune == TUNE_ON_TASK:
                tune = self.spec("tasks", task).reserved["data"]
            cells.append(Cell(victim, scenario, attack, eps, defense, tune, task, seed))
        return cells

    def attack_scenarios(self, attack: str) -> list[str]:
        """The scenarios attack table ``attack`` runs in: its ``scenarios`` key, else the grid's axis."""
        return list(self.spec("attacks", attack).reserved.get("scenarios", self.grid["scenarios"]))

    def unsupported_pairing(self) -> tuple[str, str, str] | None:
        """``(attack id, scenario, message)`` of the first grid pairing the attack's plugin does not
        support (``Attack.scenarios``), or ``None``."""
        if self.registry is None:
            return None
        for attack in self.grid["attacks"]:
            spec = self.spec("attacks", attack)
            supported = self.registry.get("attacks", spec.plugin).scenarios
            for scenario in self.attack_scenarios(attack):
                if scenario not in supported:
                    return (
                        attack,
                        scenario,
                        f"attack {attack!r} (plugin {spec.plugin!r}) does not support scenario "
                        f"{scenario!r}; it supports: {', '.join(supported)} (set `scenarios` in "
                        f"[attacks.{attack}] or the grid's `scenarios`)",
                    )
        return None

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
        changed = {"grid": grid}
        if axes.get("scenarios") is not None:
            changed["scenario_filter"] = list(axes["scenarios"])
        suite = Suite(**{**self.__dict__, **changed})
        bad = suite.unsupported_pairing()
        if bad:
            raise UserError(f"--scenarios/--attacks: {bad[2]}")
        return suite


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


def _read_toml(path: Path) -> dict[str, Any]:
    """The suite file as TOML tables; unreadable, binary or non-UTF-8 input is one ``UserError``."""
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a suite file (give a .toml file)")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such suite file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the suite file: {exc.strerror or exc}") from None
    if b"\0" in data:
        raise SuiteError(path, "", "not a text file (binary content); a suite is a UTF-8 TOML file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(
            path, "", f"not UTF-8 text (byte {exc.start}); save the suite as UTF-8 TOML"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(path, "", f"TOML syntax error: {exc}") from None


def _resolve_paths(cls: type, params: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative paths among ``cls.path_params`` resolve against ``base`` (the suite file's folder)."""
    out = dict(params)
    for key in getattr(cls, "path_params", ()):
        value = out.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            out[key] = os.path.normpath(base / value)
    return out


@contextmanager
def _importable_from(folder: Path):
    """Let ``[suite] plugins`` modules be found beside the suite file (then on the Python path)."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def load_suite(path: str | Path, registry: Registry, download: bool = False, checks: bool = True) -> Suite:
    """Parse and fully validate a suite: names, types, budgets, references, plugin params, data paths.

    Tables to be downloaded (``download``: every dataset and encoder; else datasets with
    ``download = true``) whose plugin can ``fetch()`` skip the path check; validation never downloads.
    ``checks=False`` skips every plugin's ``check()`` (data and file paths), for what needs no data
    (the paper's numbers of ``leaderboard --reference``).
    """
    path = Path(path)
    raw = _read_toml(path)
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
        "precision",
        "adaptive_eps",
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
    precision = _expect(path, "suite.precision", head.get("precision", "fp32"), str, "a string")
    if precision not in ("fp32", "bf16"):
        raise SuiteError(path, "suite.precision", f"expected fp32 or bf16, got {precision!r}")
    try:
        eps = parse_eps(head.get("eps", "10/255"))
    except ValueError as exc:
        raise SuiteError(path, "suite.eps", f"expected {exc}") from None
    adaptive_eps = None
    if "adaptive_eps" in head:
        try:
            adaptive_eps = [parse_eps(v) for v in _id_list(path, "suite.adaptive_eps", head["adaptive_eps"])]
        except ValueError as exc:
            raise SuiteError(path, "suite.adaptive_eps", f"expected {exc}") from None
    plugins = _expect(path, "suite.plugins", head.get("plugins", []), list, "a list of module paths")
    if plugins:
        from zepad_bench.registry import load_registry

        folder = path.resolve().parent
        try:
            with _importable_from(folder):
                registry = load_registry(tuple(plugins))
        except UserError as exc:
            raise SuiteError(path, "suite.plugins", f"{exc} (searched {folder} first)") from None

    tables: dict[str, dict[str, PluginSpec]] = {}
    downloads: set[str] = set()
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
            marked = section == "datasets" and _expect(
                path, f"{key}.download", reserved.pop("download", False), bool, "true or false"
            )
            if marked or (download and section in FETCHED):
                downloads.add(key)
            params = {k: v for k, v in table.items() if k not in RESERVED[section]}
            params = _resolve_paths(known[plugin], params, path.resolve().parent)
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
    for id_, spec in tables["attacks"].items():
        if "scenarios" in spec.reserved:
            key = f"attacks.{id_}.scenarios"
            for i, scenario in enumerate(_id_list(path, key, spec.reserved["scenarios"])):
                if scenario not in SCENARIOS:
                    raise SuiteError(
                        path, f"{key}[{i}]", f"expected one of {', '.join(SCENARIOS)}, got {scenario!r}"
                    )
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
        frozenset(downloads),
        precision,
        adaptive_eps,
    )
    bad = suite.unsupported_pairing()
    if bad:
        key = f"attacks.{bad[0]}.scenarios" if "scenarios" in tables["attacks"][bad[0]].reserved else "grid"
        raise SuiteError(path, key, bad[2])
    for section, entries in tables.items():
        for id_ in entries:
            plugin = instantiate(suite, registry, section, id_, eps=grid["eps"][0])
            if not checks or (f"{section}.{id_}" in downloads and callable(getattr(plugin, "fetch", None))):
                continue  # fetched by `run --download` before any work; validation never downloads
            try:
                plugin.check()
            except SuiteError:
                raise
            except UserError as exc:
                raise SuiteError(path, f"{section}.{id_}", str(exc)) from None
    return suite


def _apply_protocol(path: Path, head: dict, defenses: dict[str, PluginSpec], registry: Registry) -> None:
    """``[suite] protocol`` ("authors" | "corrected"): the default ``protocol`` param of every defense
    that takes one; a defense table's own ``protocol`` wins."""
    if "protocol" not in head:
        return
    protocol = head["protocol"]
    if protocol not in ("authors", "corrected"):
        raise SuiteError(path, "suite.protocol", f"expected 'authors' or 'corrected', got {protocol!r}")
    from zepad_bench.params import declaration

    for spec in defenses.values():
        if "protocol" in declaration(registry.get("defenses", spec.plugin)).params:
            spec.params.setdefault("protocol", protocol)


def instantiate(suite: Suite, registry: Registry, section: str, id_: str, eps: float | None = None):
    """Create the plugin object of table ``section.id_``; bad params become a :class:`SuiteError`."""
    from zepad_bench.params import check

    spec = suite.spec(section, id_)
    cls = registry.get(KIND_OF[section], spec.plugin)
    try:
        check(cls, spec.params)  # names, types and allowed values from the declaration, before construction
        return cls(eps, **spec.params) if section == "attacks" else cls(**spec.params)
    except (TypeError, ValueError) as exc:
        raise SuiteError(
            suite.path, f"{section}.{id_}", f"bad parameters for plugin {spec.plugin!r}: {exc}"
        ) from None
