"""A stage's value, computed once: memoised in the process, cached on disk under the graph's key,
computed under a lock on that key, and recomputed when ``--force`` names it or a stage it reads."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from zepad_bench.cache import ArtifactCache
from zepad_bench.errors import CellFailed
from zepad_bench.locks import stage_lock
from zepad_bench.machine import now
from zepad_bench.nn import precision
from zepad_bench.nn.backbones import plugin_backbones
from zepad_bench.seeding import seed_everything
from zepad_bench.stages import ForceSpec, Stage
from zepad_bench.store import ResultStore

_MISSING = object()


class StageCache:
    """Computes and stores stages; never derives a key (each :class:`Stage` carries the graph's).

    ``since`` is the start of the run (a Slurm run's jobs share the driver's): a stage forced by this
    run and already recomputed by one of its jobs is not recomputed again. Counts what it computed and
    reused per stage kind, and the seconds of each computation by key.
    """

    def __init__(
        self,
        workdir: Path,
        force: ForceSpec,
        precision_name: str,
        backbones: Mapping[str, Callable[..., Any]],
        suite_name: str,
        since: str,
        log: Callable[[str], None],
    ):
        self.workdir = workdir
        self.cache, self.store = ArtifactCache(workdir), ResultStore(workdir)
        self.force, self.precision, self.backbones = force, precision_name, backbones
        self.suite_name, self.since, self.log = suite_name, since, log
        self._memo: dict[tuple[str, str], Any] = {}
        self._fresh: set[str] = set()  # keys computed in this run (forcing propagates downstream)
        self.computed: Counter[str] = Counter()
        self.reused: Counter[str] = Counter()
        self.seconds: dict[str, float] = {}

    def get(
        self,
        node: Stage,
        seed: int,
        compute: Callable[[], Any],
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
    ) -> Any:
        """The value of ``node``: from this process, the cache, or ``compute()`` (seeded with ``seed``,
        at the suite's precision) then stored with ``encode``; cached values go through ``decode``."""
        memo = (node.kind, node.key)
        if memo in self._memo:
            return self._memo[memo]
        forced = self._forced(node)
        value = _MISSING if forced else self._cached(node, decode)
        if value is _MISSING:
            with stage_lock(self.workdir, node.kind, node.key):
                # a concurrent job (Slurm) may have made it while this one waited for the lock
                forced = forced and not self.store.computed_since(node.key, self.since)
                value = _MISSING if forced else self._cached(node, decode)
                if value is _MISSING:
                    value = self._compute(node, seed, compute, encode)
        self._memo[memo] = value
        return value

    def _cached(self, node: Stage, decode: Callable[[Any], Any]) -> Any:
        """The decoded artifact of ``node``, or ``_MISSING`` (absent, or written by an older plugin
        version in a form that no longer decodes: then it is made anew)."""
        if not self.cache.has(node.kind, node.key):
            return _MISSING
        try:
            with plugin_backbones(self.backbones):
                value = decode(self.cache.load(node.kind, node.key))
        except Exception as exc:
            self.log(
                f"{node.kind:<9} {node.label}: cached artifact does not decode ({one_line(exc)}); recomputing"
            )
            return _MISSING
        self.reused[node.kind] += 1
        return value

    def _compute(
        self, node: Stage, seed: int, compute: Callable[[], Any], encode: Callable[[Any], Any]
    ) -> Any:
        seed_everything(seed)
        start = time.perf_counter()
        try:
            with precision.use(self.precision), plugin_backbones(self.backbones):
                value = compute()
        except CellFailed as exc:
            exc.stage = exc.stage or node.kind  # the innermost stage is the one that failed
            raise
        seconds = time.perf_counter() - start
        self.cache.save(node.kind, node.key, encode(value), node.material)
        self.store.log_stage(node.kind, node.key, node.label, seconds, self.suite_name, now("microseconds"))
        self.computed[node.kind] += 1
        self._fresh.add(node.key)
        self.seconds[node.key] = seconds
        self.log(f"{node.kind:<9} {node.label}  [{seconds:.1f}s]")
        return value

    def _forced(self, node: Stage) -> bool:
        """``--force`` names this stage (kind or plugin) or a stage it reads was recomputed by force,
        and no job of this run (``since``) has recomputed it yet."""
        if not self.force or node.key in self._fresh:
            return False
        fresh = self._fresh | self.store.keys_computed_since(self.since)
        if node.key in fresh:
            return False
        return self.force.matches(node.kind, node.plugin) or any(s.key in fresh for s in node.inputs)


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def as_is(value: Any) -> Any:
    """The codec of a value stored as it is (tensors, plain data)."""
    return value
