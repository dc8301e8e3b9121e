"""The measurement database: one SQLite file of kernel timings, reused across runs.

A row is keyed by the op signature (:meth:`KernelSpec.signature`), the target (code generator,
threads), TVM's version, the CPU model and the schedule version, so a measurement is reused
only where it still holds. SQLite's WAL journal lets several processes read while one writes;
writes retry on a busy lock. Failed measurements are stored too (with their reason), so a run
does not retry a kernel that cannot build; ``--retry-failed`` ignores them.

Default location: ``.codesign-cache/measure.sqlite`` under the current directory, or under
``$CODESIGN_CACHE_DIR`` when set.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codesign.errors import CodesignError

SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    signature TEXT NOT NULL,
    target TEXT NOT NULL,
    tvm_version TEXT NOT NULL,
    cpu_model TEXT NOT NULL,
    schedule_version INTEGER NOT NULL,
    op_class TEXT NOT NULL,
    kernel TEXT NOT NULL,
    status TEXT NOT NULL,
    latency_s REAL,
    stdev_s REAL,
    compile_s REAL,
    error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    PRIMARY KEY (signature, target, tvm_version, cpu_model, schedule_version)
);
"""


class MeasureDBError(CodesignError):
    """The measurement database cannot be opened or read."""


def default_path() -> Path:
    base = os.environ.get("CODESIGN_CACHE_DIR")
    return (Path(base) if base else Path.cwd() / ".codesign-cache") / "measure.sqlite"


@dataclass(frozen=True)
class Row:
    signature: str
    target: str
    tvm_version: str
    cpu_model: str
    schedule_version: int
    op_class: str
    kernel: str
    status: str
    latency_s: float | None
    stdev_s: float | None
    compile_s: float | None
    error: str
    created_at: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class MeasureDB:
    """A handle on the database file (one connection; open one per process or thread)."""

    def __init__(self, path: str | Path | None = None, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path) if path is not None else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise MeasureDBError(
                f"measurement database {self.path}: {exc} (fix: pass --db PATH to a writable file)"
            ) from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> MeasureDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(
        self,
        signature: str,
        *,
        target: str,
        tvm_version: str,
        cpu_model: str,
        schedule_version: int,
    ) -> Row | None:
        cur = self._conn.execute(
            "SELECT * FROM measurements WHERE signature=? AND target=? AND tvm_version=? "
            "AND cpu_model=? AND schedule_version=?",
            (signature, target, tvm_version, cpu_model, schedule_version),
        )
        found = cur.fetchone()
        return Row(*found) if found else None

    def put(self, row: Row) -> None:
        for attempt in range(5):
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO measurements VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        row.signature,
                        row.target,
                        row.tvm_version,
                        row.cpu_model,
                        row.schedule_version,
                        row.op_class,
                        row.kernel,
                        row.status,
                        row.latency_s,
                        row.stdev_s,
                        row.compile_s,
                        row.error,
                        row.created_at,
                    ),
                )
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 4:
                    raise MeasureDBError(f"measurement database {self.path}: {exc}") from None
                time.sleep(0.05 * 2**attempt)

    def rows(
        self,
        *,
        target: str | None = None,
        cpu_model: str | None = None,
        tvm_version: str | None = None,
        schedule_version: int | None = None,
        ok_only: bool = False,
    ) -> list[Row]:
        where, args = [], []
        for col, value in (
            ("target", target),
            ("cpu_model", cpu_model),
            ("tvm_version", tvm_version),
            ("schedule_version", schedule_version),
        ):
            if value is not None:
                where.append(f"{col}=?")
                args.append(value)
        if ok_only:
            where.append("status='ok'")
        sql = "SELECT * FROM measurements"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY op_class, kernel"
        return [Row(*r) for r in self._conn.execute(sql, args).fetchall()]

    def counts(self) -> dict[str, int]:
        cur = self._conn.execute("SELECT status, COUNT(*) FROM measurements GROUP BY status")
        return dict(cur.fetchall())

    def put_many(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.put(row)


def row_from_measurement(m: Any, *, tvm_version: str, cpu_model: str, schedule: int) -> Row:
    return Row(
        signature=m.spec.signature(),
        target=m.target,
        tvm_version=tvm_version,
        cpu_model=cpu_model,
        schedule_version=schedule,
        op_class=m.spec.op_class,
        kernel=m.spec.label(),
        status=m.status,
        latency_s=m.latency_s,
        stdev_s=m.stdev_s,
        compile_s=m.compile_s,
        error=m.error,
        created_at=time.time(),
    )


def dumps(rows: Iterable[Row]) -> str:
    return json.dumps([r.as_dict() for r in rows], indent=2)
