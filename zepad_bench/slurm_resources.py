"""What each Slurm job asks for, per phase (encoder, attack, defense, cell): from the suite's ``[slurm]``
table and the ``--slurm-*`` options, checked before any work (no torch, no Slurm needed)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from zepad_bench.errors import UserError

PHASES = ("encoder", "attack", "defense", "cell")


@dataclass(frozen=True)
class Resources:
    """What one job asks for. ``mem_gb`` ``None``: the cluster's default (``DefMemPerCPU``)."""

    cpus: int = 1
    mem_gb: float | None = None
    gpus: int = 0
    timeout_min: int = 240
    partition: str | None = None

    def submitit(self) -> dict[str, Any]:
        """As submitit's ``update_parameters`` takes it."""
        params = {"cpus_per_task": self.cpus, "timeout_min": self.timeout_min, "tasks_per_node": 1}
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if self.partition:
            params["slurm_partition"] = self.partition
        return params

    def text(self) -> str:
        mem = f"{self.mem_gb:g} GB" if self.mem_gb is not None else "default memory"
        gpus = f", {self.gpus} GPU" if self.gpus else ""
        return f"{self.cpus} CPU, {mem}{gpus}, {self.timeout_min} min"


RESOURCE_RULES: dict[str, tuple[type, str, Callable[[Any], bool]]] = {
    "cpus": (int, "an integer ≥ 1", lambda v: v >= 1),
    "mem_gb": (float, "a number of GB > 0", lambda v: v > 0),
    "gpus": (int, "an integer ≥ 0", lambda v: v >= 0),
    "timeout_min": (int, "an integer number of minutes ≥ 1", lambda v: v >= 1),
    "partition": (str, "a partition name", lambda v: bool(v.strip())),
}
CLI_FIELDS = {"cpus": "--slurm-cpus", "mem_gb": "--slurm-mem", "gpus": "--slurm-gpus"}
CLI_FIELDS |= {"timeout_min": "--slurm-timeout", "partition": "--slurm-partition"}


def _checked(name: str, value: Any, where: str) -> Any:
    kind, expected, ok = RESOURCE_RULES[name]
    if isinstance(value, str) and kind is not str:
        try:
            value = kind(value)
        except ValueError:
            raise UserError(f"{where}: expected {expected}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) or not ok(value):
        raise UserError(f"{where}: expected {expected}, got {value!r}")
    return value


def suite_resources(table: dict[str, Any], where: str) -> list[tuple[str | None, str, Any]]:
    """The suite's ``[slurm]`` table (``where`` names it in errors) as checked ``(phase | None, field,
    value)`` settings: keys of :data:`RESOURCE_RULES` for every job, ``[slurm.<phase>]`` tables for one
    phase (:data:`PHASES`)."""
    out: list[tuple[str | None, str, Any]] = []
    for key, value in table.items():
        if key in PHASES:
            if not isinstance(value, dict):
                raise UserError(f"{where}.{key}: expected a table of {', '.join(RESOURCE_RULES)}")
            for name, inner in value.items():
                if name not in RESOURCE_RULES:
                    raise UserError(
                        f"{where}.{key}.{name}: unknown key; expected one of {', '.join(RESOURCE_RULES)}"
                    )
                out.append((key, name, _checked(name, inner, f"{where}.{key}.{name}")))
        elif key in RESOURCE_RULES:
            out.append((None, key, _checked(key, value, f"{where}.{key}")))
        else:
            known = ", ".join([*RESOURCE_RULES, *PHASES])
            raise UserError(f"{where}.{key}: unknown key; expected one of {known}")
    return out


def cli_resources(options: dict[str, Iterable[str]]) -> list[tuple[str | None, str, Any]]:
    """``{field: ("4", "defense=8"), …}`` from the ``--slurm-*`` options as checked settings."""
    out: list[tuple[str | None, str, Any]] = []
    for name, values in options.items():
        for text in values:
            phase, sep, value = text.partition("=")
            if not sep:
                phase, value = None, text
            elif phase not in PHASES:
                known = ", ".join(PHASES)
                raise UserError(
                    f"{CLI_FIELDS[name]} {text!r}: unknown phase {phase!r}; expected one of {known}"
                )
            out.append((phase, name, _checked(name, value, f"{CLI_FIELDS[name]} {text!r}")))
    return out


def phase_resources(*settings: list[tuple[str | None, str, Any]]) -> dict[str, Resources]:
    """Each phase's resources: the defaults, then each list of settings in turn (suite, then command
    line), within a list the settings for every phase before those for one phase."""
    out = {phase: Resources() for phase in PHASES}
    for layer in settings:
        for phase, name, value in sorted(layer, key=lambda s: s[0] is not None):
            for p in [phase] if phase else PHASES:
                out[p] = replace(out[p], **{name: value})
    return out
