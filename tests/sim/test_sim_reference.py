"""bench/sim.py's reference simulation writes what a shipped sale writes, no less.

The reference is the floor the simulator is measured against (issue #15): the codec
work and the statements one sale makes durable on the terminal and the host. If the
shipped code writes more for a sale (or the reference drops a statement), the floor
would measure something else: these tests tie the two together.
"""

from __future__ import annotations

import importlib.util
import re
import sqlite3
import sys
from pathlib import Path
from types import ModuleType

import pytest

from posbatch.host._queries import HotSql
from posbatch.sim import SimConfig, World, profile_named
from posbatch.sim import _memory as memory_module

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sim.py"
CONFIG = SimConfig(terminals=2, days=1, transactions=6, faults=profile_named("none"))
_DML = re.compile(r"^\s*(INSERT INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)

Unit = tuple[tuple[str, str], ...]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_sim", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_sim"] = module
    spec.loader.exec_module(module)
    return module


def _shape(sql: str) -> tuple[str, str]:
    found = _DML.match(sql)
    assert found is not None, sql
    return found.group(1).upper(), found.group(2)


def _shipped_units(monkeypatch: pytest.MonkeyPatch) -> list[Unit]:
    """Every unit of work the shipped code commits in a fault-free day, as (verb, table)s."""
    open_units: dict[str, list[tuple[str, str]]] = {}
    units: list[Unit] = []
    connect = memory_module._connect

    def traced(uri: str) -> sqlite3.Connection:
        connection = connect(uri)
        database = uri.split("?", maxsplit=1)[0]

        def trace(statement: str) -> None:
            word = statement.split(maxsplit=1)[0].upper() if statement.strip() else ""
            if word == "COMMIT":
                units.append(tuple(open_units.pop(database, [])))
            elif word in ("INSERT", "UPDATE"):
                open_units.setdefault(database, []).append(_shape(statement))

        connection.set_trace_callback(trace)
        return connection

    monkeypatch.setattr(memory_module, "_connect", traced)
    world = World(1, CONFIG)
    try:
        world.run()
    finally:
        world.close()
    return units


def test_the_reference_sale_is_a_sale_the_shipped_code_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reference's three units of work follow one another in a shipped day."""
    bench = _bench()
    world = World(1, CONFIG)
    try:
        world.run()
        tills = bench._tills(world)
        sales = bench._sale_statements(tills, 1, HotSql(world.store.engine))
    finally:
        world.close()
    _index, first, host, second = sales[0]
    reference = [tuple(_shape(sql) for sql, _ in unit) for unit in (first, host, second)]
    assert sum(map(len, reference)) == bench.WRITES_PER_SALE
    assert len(reference) == bench.COMMITS_PER_SALE
    shipped = _shipped_units(monkeypatch)
    sales_seen = sum(
        1
        for at in range(len(shipped) - 2)
        if [shipped[at], shipped[at + 1], shipped[at + 2]] == reference
    )
    assert sales_seen >= 1, shipped


def test_the_reference_writes_real_rows() -> None:
    """Every sale lands on the host and every journal's hash chain still holds."""
    bench = _bench()
    seconds = bench.reference_write_seconds(CONFIG, 40)
    assert seconds > 0.0  # _check_written raised otherwise
