"""The results store: one SQLite row per cell (finished or failed), a log of every stage computation,
and a structured record of every run. The stored row is the data every report renders
(docs/results.md)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY, suite TEXT, victim TEXT, scenario TEXT, attack TEXT, eps REAL,
    defense TEXT, tuning TEXT, task TEXT, task_data TEXT, seed INTEGER,
    metrics TEXT, config TEXT, versions TEXT, timings TEXT, machine TEXT, created TEXT,
    status TEXT, reason TEXT, stage TEXT, code TEXT, records TEXT
);
CREATE TABLE IF NOT EXISTS stage_runs (
    stage TEXT, key TEXT, label TEXT, seconds REAL, suite TEXT, created TEXT, plugin TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    suite TEXT, finished TEXT, seconds REAL, executor TEXT, kind TEXT, partial INTEGER,
    cells_computed INTEGER, cells_reused INTEGER, cells_failed INTEGER, stages TEXT, machine TEXT
);
"""
RUN_COLUMNS = (
    "suite",
    "finished",
    "seconds",
    "executor",
    "kind",
    "partial",
    "cells_computed",
    "cells_reused",
    "cells_failed",
    "stages",
    "machine",
)
"""A run record (``runs`` table): ``executor`` local or slurm; ``kind`` cold (no cell of the suite
was stored), warm or forced; ``partial`` a run narrowed by axis options; ``stages`` ``{kind:
{"computed": n, "reused": n, "seconds": s}}`` over the distinct stages the run read; ``machine``
where it ran (JSON)."""
LEGACY_RUNS = """
INSERT INTO runs SELECT suite, finished, seconds, 'local',
    CASE WHEN note LIKE 'forced%' THEN 'forced' WHEN note LIKE 'cold%' THEN 'cold' ELSE 'warm' END,
    note LIKE '%partial grid%', computed, reused, failed, '{}', machine FROM legacy_runs;
DROP TABLE legacy_runs;
"""
"""Run records were prose (``note``) until they were recorded as fields: carried over once, field by field."""
COLUMNS = (
    "key",
    "suite",
    "victim",
    "scenario",
    "attack",
    "eps",
    "defense",
    "tuning",
    "task",
    "task_data",
    "seed",
    "metrics",
    "config",
    "versions",
    "timings",
    "machine",
    "created",
    "status",
    "reason",
    "stage",
    "code",
    "records",
)
JSON_COLUMNS = ("metrics", "config", "versions", "timings", "machine", "code", "records")
ADDED_COLUMNS = {
    "results": dict.fromkeys(("status", "reason", "stage", "code", "records"), "TEXT"),
    "stage_runs": {"plugin": "TEXT"},
}
"""Columns a store written before lacks (added on open; its rows are ``ok``)."""
HISTOGRAM_BINS = 40


class ResultStore:
    """SQLite file ``<workdir>/results.sqlite``; each write is its own transaction (atomic)."""

    def __init__(self, workdir: Path):
        self.path = Path(workdir) / "results.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect()
        db.isolation_level = None  # an explicit transaction: concurrent jobs migrate one at a time
        try:
            db.execute("BEGIN IMMEDIATE")
            _migrate(db)
            db.execute("COMMIT")
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def has(self, key: str) -> bool:
        """Whether cell ``key`` has a result (a failed cell has none: it runs again)."""
        with self._connect() as db:
            query = "SELECT 1 FROM results WHERE key = ? AND (status IS NULL OR status = 'ok')"
            return db.execute(query, (key,)).fetchone() is not None

    def put(self, row: dict[str, Any]) -> None:
        """Store a cell's row (replacing any earlier row of that key, a failed one included)."""
        row = {"status": "ok", "reason": None, "stage": None, "code": {}, "records": {}, **row}
        values = [json.dumps(row[c], sort_keys=True) if c in JSON_COLUMNS else row[c] for c in COLUMNS]
        query = (
            f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        )
        with self._connect() as db:
            db.execute(query, values)

    def put_failed(self, row: dict[str, Any]) -> None:
        """Store a failed cell: its key, suite, grid coordinates, ``task_data``, ``created``, a one-line
        ``reason`` and the ``stage`` that failed (the other fields default to empty); a later
        successful run of the same key replaces it, and :meth:`has` does not count it."""
        if "\n" in row["reason"]:
            raise ValueError("a failed cell's reason is one line")
        empty = dict.fromkeys(("metrics", "config", "versions", "timings", "machine", "code", "records"), {})
        self.put({**empty, **row, "status": "failed"})

    def rows(self, suite: str | None = None, keys: list[str] | None = None) -> list[dict[str, Any]]:
        """Stored rows (finished and failed), oldest first."""
        query, args = "SELECT * FROM results", []
        if suite is not None:
            query, args = query + " WHERE suite = ?", [suite]
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute(query + " ORDER BY created, rowid", args)]
        for row in rows:
            for c in JSON_COLUMNS:
                row[c] = json.loads(row[c]) if row[c] is not None else {}
            row["status"] = row["status"] or "ok"
        if keys is not None:
            wanted = set(keys)
            rows = [r for r in rows if r["key"] in wanted]
        return rows

    def log_stage(
        self,
        stage: str,
        key: str,
        label: str,
        seconds: float,
        suite: str,
        created: str,
        plugin: str | None = None,
    ) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO stage_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (stage, key, label, seconds, suite, created, plugin),
            )

    def stage_seconds(self, keys: list[str]) -> dict[str, float]:
        """The logged cost of each of ``keys`` computed in this work directory (its latest computation),
        wherever it ran: a Slurm job's stage is logged by that job."""
        if not keys:
            return {}
        with self._connect() as db:
            marks = ", ".join("?" * len(keys))
            query = f"SELECT key, seconds FROM stage_runs WHERE key IN ({marks}) ORDER BY created"
            return dict(db.execute(query, list(keys)).fetchall())

    def stage_runs(self, suite: str | None = None) -> list[dict[str, Any]]:
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            query = "SELECT * FROM stage_runs" + (" WHERE suite = ?" if suite else "")
            return [dict(r) for r in db.execute(query, (suite,) if suite else ())]

    def log_run(self, run: dict[str, Any]) -> None:
        """One ``zepad-bench run`` of a suite: a record with :data:`RUN_COLUMNS`."""
        values = [
            json.dumps(run[c], sort_keys=True) if c in ("stages", "machine") else run[c] for c in RUN_COLUMNS
        ]
        marks = ", ".join("?" * len(RUN_COLUMNS))
        with self._connect() as db:
            db.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({marks})", values)

    def runs(self, suite: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = [
                dict(r) for r in db.execute("SELECT * FROM runs WHERE suite = ? ORDER BY finished", (suite,))
            ]
        for row in rows:
            row["stages"], row["machine"] = json.loads(row["stages"]), json.loads(row["machine"])
            row["partial"] = bool(row["partial"])
        return rows

    def computed_since(self, key: str, since: str) -> bool:
        """Whether the stage ``key`` was computed at or after ``since`` (an ISO timestamp)."""
        return key in self.keys_computed_since(since)

    def keys_computed_since(self, since: str) -> set[str]:
        with self._connect() as db:
            return {k for (k,) in db.execute("SELECT key FROM stage_runs WHERE created >= ?", (since,))}


def _migrate(db: sqlite3.Connection) -> None:
    """Create the tables; bring a store written by an earlier version up to this schema."""
    legacy = "note" in _columns(db, "runs")
    if legacy:
        db.execute("ALTER TABLE runs RENAME TO legacy_runs")
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    for table, added in ADDED_COLUMNS.items():
        present = _columns(db, table)
        for column, kind in added.items():
            if column not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    if legacy:
        for statement in LEGACY_RUNS.split(";"):
            if statement.strip():
                db.execute(statement)


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def record_histograms(records: dict[str, Any], bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """A cell's records (``RunContext.record``) in the stored form, small enough for every row: each
    array as ``{"n", "range": [lo, hi], "counts"}`` (``bins`` equal bins, non-finite values left
    out), a scalar as a number. Arrays whose names differ only in ``_clean``/``_adv`` share one range,
    so their histograms compare bin by bin (e.g. a detection score's ROC curve at the bin edges)."""
    out: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, value in records.items():
        if hasattr(value, "detach"):  # a torch tensor, without importing torch here
            value = value.detach().float().cpu().numpy()
        array = np.asarray(value, dtype=float)
        if array.ndim == 0:
            out[name] = float(array)
        else:
            flat = array.ravel()
            arrays[name] = flat[np.isfinite(flat)]
    pairs: dict[str, list[str]] = {}
    for name in arrays:
        pairs.setdefault(name.replace("_adv", "_clean", 1), []).append(name)
    for names in pairs.values():
        values = np.concatenate([arrays[n] for n in names])
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        for name in names:
            counts, _ = np.histogram(arrays[name], bins=bins, range=(lo, hi))
            out[name] = {"n": int(arrays[name].size), "range": [lo, hi], "counts": counts.tolist()}
    return out
