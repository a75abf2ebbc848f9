"""A void or refund is checked again after what was outstanding went first.

Found by the kill probe (tests/host/killprobe.py, seed 5000): a refund whose answer a
killed host never sent stays ``resend_pending``; the cashier's next operation on the
same sale — a void, or another refund — was checked against the sale *before* that
refund was resent and approved, so it went out anyway: a STAN spent, a host decline
(12, or 61 past the amount) shown for what the terminal itself refuses.
"""

from __future__ import annotations

import pytest
from terminal_invariants import problems
from terminal_world import PAN, TERMINAL_ID, World

from posbatch.batch.model import Kind
from posbatch.errors import ConfigError, TerminalError
from posbatch.host import FaultAction, FaultRule
from posbatch.terminal import TxnState


def _pending_refund(world: World, sale_amount_fen: int, refund_fen: int) -> int:
    """A sale, then a refund of it whose answers are all lost: the sale's STAN."""
    sale = world.terminal.sale(sale_amount_fen, PAN)
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.REFUND, count=4))
    pending = world.terminal.refund(sale.stan, refund_fen)
    assert pending.state == TxnState.RESEND_PENDING
    return sale.stan


def test_void_of_a_sale_whose_refund_was_pending_is_refused_after_the_resend(
    world: World,
) -> None:
    """The refund goes first and is approved; the void is then refused on the terminal."""
    stan = _pending_refund(world, 5000, 1000)
    with pytest.raises(TerminalError, match="partly refunded"):
        world.terminal.void(stan)
    kinds = [(row.kind, row.state) for row in world.terminal.journal.transactions()]
    host_kinds = [(row.kind, row.status) for row in world.store.transactions(TERMINAL_ID)]
    assert (kinds, host_kinds) == (
        [("sale", "approved"), ("refund", "approved")],
        [(Kind.SALE, "approved"), (Kind.REFUND, "approved")],
    )
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_refund_past_what_the_pending_refund_leaves_is_refused_after_the_resend(
    world: World,
) -> None:
    """3000 of 5000 pending, 3000 more asked: the first is resent, the second refused."""
    stan = _pending_refund(world, 5000, 3000)
    with pytest.raises(ConfigError, match=r"at most 20\.00"):
        world.terminal.refund(stan, 3000)
    refunds = [row for row in world.store.transactions(TERMINAL_ID) if row.kind == Kind.REFUND]
    journal_refunds = [row for row in world.terminal.journal.transactions() if row.kind == "refund"]
    assert ([r.status for r in refunds], [r.state for r in journal_refunds]) == (
        ["approved"],
        ["approved"],
    )
    assert problems(world.terminal, world.store, TERMINAL_ID) == []
