"""Progress of a local run counted in stages: what is being computed (kind, plugin, seed), how many of
the run's stages are done and how many were cached, and the time left, estimated from the stage log of
earlier runs (and of this one, as it goes)."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable
from statistics import median
from typing import Any

from rich.progress import ProgressColumn, Task
from rich.text import Text

from zepad_bench.stages import Stage

_SEED = re.compile(r"\s*\(seed \d+\)|/seed=\d+")


def _unseeded(label: str) -> str:
    return _SEED.sub("", label)


class StageEstimates:
    """Expected seconds of a stage, from logged computations (``stage_runs`` rows): the same stage
    (key), else the same stage on another seed (label), else the median of its plugin's stages of
    that kind, else of its kind; ``None`` when nothing alike was ever timed."""

    def __init__(self, log: Iterable[dict[str, Any]] = ()):
        self._seconds: dict[tuple, list[float]] = defaultdict(list)
        for row in log:
            self.add(row["stage"], row["key"], row["label"], row.get("plugin"), row["seconds"])

    def add(self, kind: str, key: str, label: str, plugin: str | None, seconds: float) -> None:
        for level in self._levels(kind, key, label, plugin):
            self._seconds[level].append(seconds)

    @staticmethod
    def _levels(kind: str, key: str, label: str, plugin: str | None) -> list[tuple]:
        levels = [("key", key), ("label", kind, _unseeded(label))]
        return levels + ([("plugin", kind, plugin)] if plugin else []) + [("kind", kind)]

    def __call__(self, stage: Stage) -> float | None:
        for level in self._levels(stage.kind, stage.key, stage.label, _plugin(stage)):
            if self._seconds.get(level):
                return median(self._seconds[level])
        return None


def task_log(store) -> list[dict[str, Any]]:
    """Each stored cell as a logged task stage: what its task took (``timings["task"]``), under the label
    and plugin its task stage has."""
    from zepad_bench.suite import Cell

    return [
        {
            "stage": "task",
            "key": r["key"],
            "label": Cell(**{f: r[f] for f in Cell.__dataclass_fields__}).label(),
            "plugin": r["config"].get("task_plugin"),
            "seconds": r["timings"]["task"],
        }
        for r in store.rows()
        if r["status"] == "ok" and "task" in r["timings"]
    ]


def _plugin(stage: Stage) -> str | None:
    """The plugin whose cost a stage follows: its own, or an attacked-images stage's attack's."""
    if stage.plugin is None:
        return next((s.plugin for s in stage.inputs if s.kind == "attack"), None)
    return stage.plugin


class StageProgress:
    """The stages a run reads (the closure of its pending cells, each once), fed by the runner's
    ``on_stage`` hook; ``line()`` is the bar's text and ``eta()`` the estimated seconds left."""

    def __init__(self, stages: Iterable[Stage], cached: set[str], estimates: StageEstimates):
        self.stages = {s.key: s for s in stages}
        self.cached = cached & set(self.stages)
        self.estimates = estimates
        self.done: set[str] = set()
        self.running: list[tuple[Stage, float]] = []  # nested: a cell's stages run inside it

    @classmethod
    def of(cls, runner, cells: list) -> StageProgress:
        """The plan of ``runner`` for ``cells``: cached = stored and not forced (a cell is never cached)."""
        stages = {s.key: s for cell in cells for s in runner.graph.task(cell).closure()}.values()
        cached = {
            s.key
            for s in stages
            if s.kind != "task" and runner.cache.has(s.kind, s.key) and not runner.force.hits(s)
        }
        return cls(stages, cached, StageEstimates([*runner.store.stage_runs(), *task_log(runner.store)]))

    def event(self, event: str, kind: str, key: str, label: str) -> None:
        """The runner's hook: a stage starts, was computed or was found cached."""
        stage = self.stages.get(key)
        if stage is None:  # inner work of a stage (features, heads): shown, not counted
            stage = Stage(kind, key, label, {})
        if event == "start":
            self.running.append((stage, time.monotonic()))
            return
        started = next((t for s, t in reversed(self.running) if s.key == key), None)
        self.running = [(s, t) for s, t in self.running if s.key != key]
        if event == "computed" and started is not None:
            self.estimates.add(kind, key, label, _plugin(stage), time.monotonic() - started)
        if key in self.stages:
            self.done.add(key)

    def finish(self, key: str) -> None:
        """A cell that ended without a result: counted; nothing of it runs any more."""
        self.running = []
        self.done.add(key)

    def to_compute(self) -> list[Stage]:
        return [s for k, s in self.stages.items() if k not in self.cached and k not in self.done]

    def eta(self) -> tuple[float, int]:
        """Estimated seconds left and how many of the stages left were never timed."""
        now = time.monotonic()
        elapsed = {s.key: now - t for s, t in self.running}
        left, untimed = 0.0, 0
        for stage in self.to_compute():
            estimate = self.estimates(stage)
            if estimate is None:
                untimed += 1
            else:
                left += max(estimate - elapsed.get(stage.key, 0.0), 0.0)
        return left, untimed

    def completed(self) -> int:
        """Stages done, the cached ones included."""
        return len(self.done | self.cached)

    def line(self) -> str:
        """``stages (25 cached) · attack uapgd@0.0392 on rand (seed 0)``: the bar's description."""
        text = f"stages ({len(self.cached)} cached)"
        if self.running:
            stage = self.running[-1][0]
            text += f" · {stage.kind} {stage.label}"
        return text

    def eta_text(self) -> str:
        left, untimed = self.eta()
        if untimed and not left:
            return "ETA: not timed before"
        text = f"ETA {_duration(left)}"
        return text + (f" + {untimed} stages not timed before" if untimed else "")

    def summary(self) -> str:
        """The plan in one line, before any work."""
        left, untimed = self.eta()
        todo = len(self.to_compute())
        text = f"{len(self.stages)} stages to read: {len(self.cached)} cached, {todo} to compute"
        if todo and left:
            text += f" (about {_duration(left)} by earlier runs' timings"
            text += f"; {untimed} never timed)" if untimed else ")"
        return text


class EtaColumn(ProgressColumn):
    """The time left of the run's stage bar, estimated afresh at every refresh (other bars: blank)."""

    def __init__(self, plan: StageProgress, task_id: int | None = None):
        super().__init__()
        self.plan, self.task_id = plan, task_id

    def render(self, task: Task) -> Text:
        return Text(self.plan.eta_text() if task.id == self.task_id else "")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
