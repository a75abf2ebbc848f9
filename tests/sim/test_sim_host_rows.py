"""The nightly checks' cheap reads still see what the host holds, and still bite.

The checker's snapshot and invariant 8's sums read the host's tables once a night with
bare SQL (``posbatch.sim._host_rows``), and a diagnosis's third support bundle is not
rendered again when its report equals the first's. These tests hold both to what they
replaced: the rows are the read API's, a host row changed on day 2 is caught that night,
and a third report that differs is checked after all.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from posbatch.host import _schema as t
from posbatch.host.read_models import totals_of
from posbatch.sim import SimConfig, World, profile_named, run_seed
from posbatch.sim import _world as world_module
from posbatch.sim._host_rows import read_host_rows
from posbatch.sim._workload import CARD_NUMBERS

HEAVY = profile_named("heavy")
# Seed 3 at this size draws copy-backs and doctor runs mid-faults (tests/sim/test_sim_world.py).
DOCTOR = SimConfig(terminals=2, days=2, transactions=6, faults=HEAVY)
DOCTOR_SEED = 3


def test_bare_reads_give_the_read_apis_rows() -> None:
    """After three heavy days (reversals, voids, batches advanced by the back office, a late
    reversal, exception records), every row read with bare SQL is the read API's, field for
    field, and so is every terminal's merchant."""
    world = World(4, SimConfig(terminals=2, days=3, transactions=10, faults=HEAVY))
    try:
        for _day in range(3):
            world.run_day()
        rows = read_host_rows(world.store.engine)
        store = world.store
        terminal_ids = [node.terminal_id for node in world.nodes]
        expected = (
            {tid: store.terminal(tid).merchant_id for tid in terminal_ids},  # type: ignore[union-attr]
            {
                tid: [(b.batch_id, b.batch_no, b.state.value, b.close_reason, b.host_totals)
                      for b in store.batches(tid, limit=10**6)]
                for tid in terminal_ids
            },
            {
                tid: [(x.transaction_id, x.batch_no, x.stan, x.kind, x.amount_fen, x.card_type,
                       x.status, x.response_code, x.original_transaction_id, x.created_at)
                      for x in store.transactions(tid, limit=10**6)]
                for tid in terminal_ids
            },
            [(e.terminal_id, e.batch_no, e.stan, e.kind, e.cause)
             for e in store.exceptions(limit=10**6)],
        )  # fmt: skip
        actual = (
            {tid: rows.merchant_of[tid] for tid in terminal_ids},
            {
                tid: [(b.batch_id, b.batch_no, b.state, b.close_reason,
                       None if b.host_totals is None else totals_of(b.host_totals))
                      for b in rows.batches.get(tid, ())]
                for tid in terminal_ids
            },
            {
                tid: [(x.transaction_id, x.batch_no, x.stan, x.kind, x.amount_fen, x.card_type,
                       x.status, x.response_code, x.original_transaction_id, x.created_at)
                      for x in rows.transactions.get(tid, ())]
                for tid in terminal_ids
            },
            [tuple(e) for e in rows.exceptions],
        )  # fmt: skip
        assert expected == actual
        assert sum(len(v) for v in actual[2].values()) > 0 and actual[3]
    finally:
        world.close()


def test_a_host_row_changed_on_day_two_is_caught_that_night() -> None:
    """Day 1 holds; on day 2 an approved sale's amount changes on the host by a fen: the
    check of that night reports it (invariant 1: the journal's approval has no match)."""
    config = SimConfig(terminals=2, days=3, transactions=6, faults=profile_named("none"))
    world = World(1, config)
    try:
        world.run_day()
        assert [] == [violation.render() for violation in world.result.violations]
        world.run_day()
        with world.store.transaction() as tx:
            tx.connection.execute(
                t.transactions.update()
                .where(
                    t.transactions.c.transaction_id
                    == (
                        t.transactions.select()
                        .with_only_columns(t.transactions.c.transaction_id)
                        .where(
                            t.transactions.c.kind == "sale", t.transactions.c.status == "approved"
                        )
                        .order_by(t.transactions.c.transaction_id.desc())
                        .limit(1)
                        .scalar_subquery()
                    )
                )
                .values(amount_fen=t.transactions.c.amount_fen + 1)
            )
        world.run_day()
        caught = {(v.invariant, v.day) for v in world.result.violations}
        assert (1, 2) in caught
    finally:
        world.close()


def test_a_third_report_that_differs_gets_its_bundle_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a third report equal to the first skips its bundle: one that differs (here, one
    whose bundle would hold a card number) is rendered and invariant 10 bites."""
    real_examine, real_bundle = world_module.examine, world_module.bundle_text
    runs = {"diagnosis": 0, "no_echo": 0, "bundles": 0, "reports": 0, "tamper": 0}

    def counting_diagnose(self: World, *args: Any, **kwargs: Any) -> None:
        runs["no_echo"] = 0
        runs["diagnosis"] += 1
        real_diagnose(self, *args, **kwargs)

    def examine(site: Any, **kwargs: Any) -> Any:
        report = real_examine(site, **kwargs)
        runs["reports"] += 1
        if not kwargs.get("echo_count"):
            runs["no_echo"] += 1
            if runs["tamper"] and runs["no_echo"] == 2:
                return replace(report, source="tampered")
        return report

    def bundle_text(report: Any) -> tuple[str, str]:
        runs["bundles"] += 1
        text, summary = real_bundle(report)
        return (text + CARD_NUMBERS[0], summary) if report.source == "tampered" else (text, summary)

    real_diagnose = World._diagnose
    monkeypatch.setattr(World, "_diagnose", counting_diagnose)
    monkeypatch.setattr(world_module, "examine", examine)
    monkeypatch.setattr(world_module, "bundle_text", bundle_text)

    held = run_seed(DOCTOR_SEED, DOCTOR)
    assert [] == [violation.render() for violation in held.violations]
    assert runs["diagnosis"] > 0 and runs["bundles"] < runs["reports"]  # equal thirds skipped

    runs["tamper"] = 1
    caught = run_seed(DOCTOR_SEED, DOCTOR)
    assert {10} == {violation.invariant for violation in caught.violations}
