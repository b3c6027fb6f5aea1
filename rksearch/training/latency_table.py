"""Per-device latency tables: one SQLite file per device key, so a spec is measured once per key, ever.

A table is ``<folder>/<key slug>.sqlite`` (folder: ``~/.cache/rksearch/latency``, ``$RKSEARCH_CACHE``
moves it, or one given): its ``device_key`` table holds the :class:`~rksearch.training.latency.DeviceKey`,
its ``latency`` table one row per spec (the spec's JSON, name, FLOPs, params, median, p90, spread,
runs, when). :func:`latency_of` looks a spec up and measures it only when the table lacks it,
looking again once it holds the device's lock, so two processes wanting one spec measure it once.
A table is created whole (key and first row) under a temporary name and linked into place.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from rksearch.arch.resolve import AnySpec
from rksearch.core.errors import RKSearchError
from rksearch.models.registry import count
from rksearch.training.latency import DeviceKey, Latency, Protocol, device_key, device_lock, measure_unlocked

SCHEMA = """
CREATE TABLE device_key (field TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE latency (spec TEXT PRIMARY KEY, name TEXT NOT NULL, flops INTEGER NOT NULL, params INTEGER NOT NULL,
    median_ms REAL NOT NULL, p90_ms REAL NOT NULL, spread REAL NOT NULL, runs INTEGER NOT NULL,
    warmup_runs INTEGER NOT NULL, settled INTEGER NOT NULL, stable INTEGER NOT NULL, measured_at TEXT NOT NULL);
"""
LATENCY_FIELDS = ("median_ms", "p90_ms", "spread", "runs", "warmup_runs", "settled", "stable")


def table_dir() -> Path:
    from rksearch.data.cache import cache_dir  # data loads torch: only when a default folder is wanted

    return cache_dir() / "latency"


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    con = sqlite3.connect(path, timeout=60)
    try:
        with con:
            yield con
    finally:
        con.close()


@dataclass(frozen=True)
class LatencyTable:
    """The latencies of one device key; the file exists once a first spec is measured."""

    path: Path
    key: DeviceKey

    @classmethod
    def for_key(cls, key: DeviceKey, folder: str | Path | None = None) -> "LatencyTable":
        """The table of ``key`` in ``folder`` (default :func:`table_dir`), existing or not yet."""
        path = Path(folder or table_dir()) / f"{key.slug}.sqlite"
        if path.exists():
            held = cls.read(path, field="--table-dir").key
            if held.compared() != key.compared():  # a file renamed by hand
                raise RKSearchError(f"holds the latencies of {held.text()}, not of {key.text()} its name says",
                                    source=path, field="--table-dir")
        return cls(path, key)

    @classmethod
    def read(cls, path: str | Path, *, field: str = "--latency-table") -> "LatencyTable":
        """An existing table, with its key; a user error naming ``field`` where it is not one."""
        path = Path(path)
        if not path.is_file():
            raise RKSearchError("no such latency table (build one with rksearch latency SPACE.yaml --all)",
                                source=path, field=field)
        try:
            with _connect(path) as con:
                data = {k: json.loads(v) for k, v in con.execute("SELECT field, value FROM device_key")}
            return cls(path, DeviceKey.from_dict(data))
        except (sqlite3.Error, ValueError, TypeError) as e:
            raise RKSearchError(f"not a latency table ({e})", source=path, field=field) from None

    def get(self, spec: AnySpec) -> Latency | None:
        if not self.path.exists():
            return None
        with _connect(self.path) as con:
            row = con.execute(f"SELECT {', '.join(LATENCY_FIELDS)} FROM latency WHERE spec = ?",
                              (spec.to_json(),)).fetchone()
        return None if row is None else Latency(row[0], row[1], row[2], row[3], row[4], bool(row[5]), bool(row[6]))

    def put(self, spec: AnySpec, latency: Latency) -> None:
        c = count(spec)
        row = (spec.to_json(), spec.name, c.flops, c.params, *(getattr(latency, f) for f in LATENCY_FIELDS),
               time.strftime("%Y-%m-%dT%H:%M:%S"))
        insert = f"INSERT OR IGNORE INTO latency VALUES ({', '.join('?' * len(row))})"
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            try:
                with _connect(tmp) as con:
                    con.executescript(SCHEMA)
                    con.executemany("INSERT INTO device_key VALUES (?, ?)",
                                    [(k, json.dumps(v)) for k, v in self.key.to_dict().items()])
                    con.execute(insert, row)
                os.link(tmp, self.path)  # never over a table another process created meanwhile
                return
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        with _connect(self.path) as con:
            con.execute(insert, row)

    def rows(self) -> list[dict[str, Any]]:
        """Every measured spec: name, flops, params, the latency fields and ``spec`` (its JSON)."""
        if not self.path.exists():
            return []
        with _connect(self.path) as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT * FROM latency ORDER BY name")]

    def __len__(self) -> int:
        if not self.path.exists():
            return 0
        with _connect(self.path) as con:
            return con.execute("SELECT COUNT(*) FROM latency").fetchone()[0]

    def measurable_here(self) -> bool:
        """Whether this machine is the table's device: it can add what the table lacks."""
        return isinstance(_here(self.key), DeviceKey)


def _here(key: DeviceKey) -> DeviceKey | str:
    """This machine's key for ``key``'s settings where it is ``key``'s device; else why not."""
    try:
        here = device_key(key.settings())
    except RKSearchError as e:  # a CUDA table on a machine without CUDA
        return e.message
    return here if here.compared() == key.compared() else "this machine has " + "; ".join(here.differences(key))


def latency_of(table: LatencyTable, spec: AnySpec, protocol: Protocol = Protocol(), *,
               lock: Path | None = None) -> tuple[Latency, bool]:
    """``spec``'s latency from ``table``, measured (under the device's lock, on this machine, which
    must be the table's device) only where the table lacks it; and whether it was measured now."""
    found = table.get(spec)
    if found is not None:
        return found, False
    here = _here(table.key)
    if not isinstance(here, DeviceKey):
        raise RKSearchError(f"cannot measure {spec.name} for this table here: {here}", source=table.path)
    with device_lock(here, lock):
        found = table.get(spec)  # measured by another process while this one waited
        if found is not None:
            return found, False
        measured = measure_unlocked(spec, here, protocol)
        table.put(spec, measured)
    return measured, True
