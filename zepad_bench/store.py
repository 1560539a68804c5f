"""The results store: one SQLite row per cell (a result, or a failure with its reason), a log of every
stage computation, and one structured record per run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY, suite TEXT, victim TEXT, scenario TEXT, attack TEXT, eps REAL,
    defense TEXT, tuning TEXT, task TEXT, task_data TEXT, seed INTEGER,
    metrics TEXT, config TEXT, versions TEXT, timings TEXT, machine TEXT, created TEXT,
    status TEXT DEFAULT 'ok', reason TEXT, stage TEXT
);
CREATE TABLE IF NOT EXISTS stage_runs (
    stage TEXT, key TEXT, label TEXT, seconds REAL, suite TEXT, created TEXT, plugin TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    suite TEXT, finished TEXT, seconds REAL, executor TEXT, kind TEXT, partial INTEGER,
    cells_computed INTEGER, cells_reused INTEGER, cells_failed INTEGER, stages TEXT, machine TEXT
);
"""
ADDED_COLUMNS = {  # columns added since the first schema: stores written before get them on opening
    "results": {"status": "TEXT DEFAULT 'ok'", "reason": "TEXT", "stage": "TEXT"},
    "stage_runs": {"plugin": "TEXT"},
}
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
"""A run record (``runs`` table): ``kind`` is ``cold`` (no cell of the suite was stored), ``warm`` or
``forced``; ``partial`` a run narrowed by axis options; ``stages`` ``{kind: {"computed": n, "reused": n,
"seconds": s}}`` over the distinct stages the run read; ``machine`` where it ran (JSON)."""
LEGACY_RUNS = """
INSERT INTO runs SELECT suite, finished, seconds, 'local',
    CASE WHEN note LIKE 'forced%' THEN 'forced' WHEN note LIKE 'cold%' THEN 'cold' ELSE 'warm' END,
    note LIKE '%partial grid%', computed, reused, failed, '{}', machine FROM legacy_runs;
DROP TABLE legacy_runs;
"""
CELL_COLUMNS = (
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
)
COLUMNS = (*CELL_COLUMNS, "metrics", "config", "versions", "timings", "machine", "created")
FAILED_COLUMNS = (*CELL_COLUMNS, "status", "reason", "stage")
JSON_COLUMNS = ("metrics", "config", "versions", "timings", "machine")


class ResultStore:
    """SQLite file ``<workdir>/results.sqlite``; each write is its own transaction (atomic)."""

    def __init__(self, workdir: Path):
        self.path = Path(workdir) / "results.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect()
        db.isolation_level = None  # explicit transaction: concurrent jobs migrate one at a time
        try:
            db.execute("BEGIN IMMEDIATE")
            _migrate(db)
            db.execute("COMMIT")
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def has(self, key: str) -> bool:
        """Whether the cell ``key`` has a result (a failed cell has none: a re-run computes it)."""
        with self._connect() as db:
            query = "SELECT 1 FROM results WHERE key = ? AND status = 'ok'"
            return db.execute(query, (key,)).fetchone() is not None

    def put(self, row: dict[str, Any]) -> None:
        """Store a cell's result (replacing a failure stored for it)."""
        self._insert(
            COLUMNS + ("status",),
            [json.dumps(row[c], sort_keys=True) if c in JSON_COLUMNS else row[c] for c in COLUMNS] + ["ok"],
        )

    def put_failed(self, row: dict[str, Any]) -> None:
        """Store a cell as failed: its ids, ``reason`` (one line) and the ``stage`` that failed."""
        self._insert(FAILED_COLUMNS, [{**row, "status": "failed"}[c] for c in FAILED_COLUMNS], created=True)

    def _insert(self, columns: tuple[str, ...], values: list[Any], created: bool = False) -> None:
        marks = ", ".join("?" * len(columns))
        if created:  # stamped as the runner stamps results: UTC, ISO 8601, seconds
            columns, marks = columns + ("created",), marks + ", strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')"
        with self._connect() as db:
            db.execute(f"INSERT OR REPLACE INTO results ({', '.join(columns)}) VALUES ({marks})", values)

    def rows(
        self, suite: str | None = None, keys: list[str] | None = None, status: str = "ok"
    ) -> list[dict[str, Any]]:
        """Stored cells with ``status`` (``ok``: results; ``failed``: ids, ``reason`` and ``stage``)."""
        query, args = "SELECT * FROM results WHERE status = ?", [status]
        if suite is not None:
            query, args = query + " AND suite = ?", [status, suite]
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute(query + " ORDER BY created", args)]
        for row in rows:
            for c in JSON_COLUMNS:
                row[c] = json.loads(row[c]) if row[c] is not None else None
            if status == "ok":
                for c in ("status", "reason", "stage"):
                    del row[c]
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
        """The logged cost of each of ``keys`` that was computed in this work directory (its latest
        computation), wherever it ran: a Slurm job's stage is logged by that job."""
        if not keys:
            return {}
        with self._connect() as db:
            query = (
                f"SELECT key, seconds FROM stage_runs WHERE key IN ({', '.join('?' * len(keys))}) "
                "ORDER BY created"
            )
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
        with self._connect() as db:
            db.execute(
                f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})",
                values,
            )

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
    if legacy:  # run records were prose until the structured record: carried over once, field by field
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
