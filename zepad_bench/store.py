"""The results store: one SQLite row per cell (finished or failed), a log of every stage computation,
and a record of every run. The stored row is the data every report renders (docs/results.md)."""

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
    stage TEXT, key TEXT, label TEXT, seconds REAL, suite TEXT, created TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    suite TEXT, finished TEXT, seconds REAL, computed INTEGER, reused INTEGER, failed INTEGER,
    note TEXT, machine TEXT
);
"""
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
ADDED_COLUMNS = ("status", "reason", "stage", "code", "records")
"""Columns a store written before failed cells were stored lacks (added on open; its rows are ``ok``)."""
HISTOGRAM_BINS = 40


class ResultStore:
    """SQLite file ``<workdir>/results.sqlite``; each write is its own transaction (atomic)."""

    def __init__(self, workdir: Path):
        self.path = Path(workdir) / "results.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(results)")}
            for column in ADDED_COLUMNS:
                if column not in present:
                    db.execute(f"ALTER TABLE results ADD COLUMN {column} TEXT")

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

    def log_stage(self, stage: str, key: str, label: str, seconds: float, suite: str, created: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO stage_runs VALUES (?, ?, ?, ?, ?, ?)",
                (stage, key, label, seconds, suite, created),
            )

    def stage_runs(self, suite: str | None = None) -> list[dict[str, Any]]:
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            query = "SELECT * FROM stage_runs" + (" WHERE suite = ?" if suite else "")
            return [dict(r) for r in db.execute(query, (suite,) if suite else ())]

    def log_run(self, run: dict[str, Any]) -> None:
        """One ``zepad-bench run`` of a suite: wall time and how many cells it computed or found stored."""
        columns = ("suite", "finished", "seconds", "computed", "reused", "failed", "note", "machine")
        values = [json.dumps(run[c], sort_keys=True) if c == "machine" else run[c] for c in columns]
        with self._connect() as db:
            db.execute(f"INSERT INTO runs VALUES ({', '.join('?' * len(columns))})", values)

    def runs(self, suite: str) -> list[dict[str, Any]]:
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = [
                dict(r) for r in db.execute("SELECT * FROM runs WHERE suite = ? ORDER BY finished", (suite,))
            ]
        for row in rows:
            row["machine"] = json.loads(row["machine"])
        return rows

    def computed_since(self, key: str, since: str) -> bool:
        """Whether the stage ``key`` was computed at or after ``since`` (an ISO timestamp)."""
        return key in self.keys_computed_since(since)

    def keys_computed_since(self, since: str) -> set[str]:
        with self._connect() as db:
            return {k for (k,) in db.execute("SELECT key FROM stage_runs WHERE created >= ?", (since,))}


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
