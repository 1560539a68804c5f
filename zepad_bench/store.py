"""The results store: one SQLite row per finished cell, plus a log of every stage computation."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY, suite TEXT, victim TEXT, scenario TEXT, attack TEXT, eps REAL,
    defense TEXT, tuning TEXT, task TEXT, task_data TEXT, seed INTEGER,
    metrics TEXT, config TEXT, versions TEXT, timings TEXT, machine TEXT, created TEXT
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
)
JSON_COLUMNS = ("metrics", "config", "versions", "timings", "machine")


class ResultStore:
    """SQLite file ``<workdir>/results.sqlite``; each write is its own transaction (atomic)."""

    def __init__(self, workdir: Path):
        self.path = Path(workdir) / "results.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def has(self, key: str) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM results WHERE key = ?", (key,)).fetchone() is not None

    def put(self, row: dict[str, Any]) -> None:
        values = [json.dumps(row[c], sort_keys=True) if c in JSON_COLUMNS else row[c] for c in COLUMNS]
        with self._connect() as db:
            db.execute(f"INSERT OR REPLACE INTO results VALUES ({', '.join('?' * len(COLUMNS))})", values)

    def rows(self, suite: str | None = None, keys: list[str] | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM results", []
        if suite is not None:
            query, args = query + " WHERE suite = ?", [suite]
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute(query + " ORDER BY created", args)]
        for row in rows:
            for c in JSON_COLUMNS:
                row[c] = json.loads(row[c])
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
