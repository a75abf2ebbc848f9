"""The financial flow's reaction table, read from the response-code table of batch/codes.py.

The table is pure: (authenticity, response code) → reaction. These tests pin
every entry, check that it follows the ``retry`` / ``sign_on_again`` flags, and
check the one behaviour the flags brought: a verified 22 ("terminal state
differs from the centre — sign on again, then retry") signs on, as A0 does.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from terminal_invariants import problems
from terminal_world import PAN, TERMINAL_ID, World, mti_of

from posbatch.batch.codes import CODES, SENT_WITHOUT_MAC, lookup
from posbatch.batch.model import Kind
from posbatch.host import FaultAction, FaultRule
from posbatch.terminal import TxnState
from posbatch.terminal._answers import Authenticity
from posbatch.terminal._financial import REACTIONS, Reaction, reaction
from posbatch.terminal._outstanding import _REFUND_RESEND_CODES, _REVERSAL_RESEND_CODES

_V = Authenticity.VERIFIED
_S = Authenticity.SIGN_ON
_U = Authenticity.UNVERIFIED


@pytest.mark.parametrize(
    ("verdict", "code", "expected"),
    [
        (_V, "00", Reaction.SHOW),
        (_V, "51", Reaction.SHOW),
        (_V, "68", Reaction.SHOW),  # retry, but nothing the terminal can repair by itself
        (_V, "90", Reaction.SHOW),
        (_V, "96", Reaction.SHOW),
        (_V, "77", Reaction.RECOVER),
        (_V, "A0", Reaction.SIGN_ON),
        (_V, "22", Reaction.SIGN_ON),
        (_V, "94", Reaction.SETTLE_DUPLICATE),
        (_V, "95", Reaction.SETTLE_FULL),
        (_V, "Z9", Reaction.SHOW),  # a code the table does not know
        (_S, "77", Reaction.RECOVER),
        (_S, "A0", Reaction.SIGN_ON),
        (_U, "00", Reaction.NOT_BELIEVED),
        (_U, "77", Reaction.NOT_BELIEVED),
        (_U, "A0", Reaction.NOT_BELIEVED),
    ],
)
def test_reaction_table_entries(verdict: Authenticity, code: str, expected: Reaction) -> None:
    """Each reaction the financial flow takes, by authenticity and response code."""
    assert expected == reaction(verdict, code)


def test_every_code_of_the_table_has_a_verified_reaction() -> None:
    """The reaction table covers every row of codes.py, and only codes.py's codes."""
    verified = {code for verdict, code in REACTIONS if verdict == _V}
    assert set(CODES) == verified


def test_only_the_codes_sent_without_a_mac_have_a_sign_on_verdict() -> None:
    """An unMACed answer is a sign-on request only for A0 and 77 (DESIGN.md "Keys and MAC")."""
    assert ({"A0", "77"}, SENT_WITHOUT_MAC) == (
        {code for verdict, code in REACTIONS if verdict == _S},
        {code for code in SENT_WITHOUT_MAC if lookup(code).sign_on_again},
    )


@given(st.sampled_from(sorted(CODES)))
def test_the_flags_decide_the_generic_reactions(code: str) -> None:
    """Outside the three batch repairs (77, 94, 95), a verified code signs on and retries
    exactly when its row says sign_on_again and retry; else it is shown."""
    row = CODES[code]
    if code in {"77", "94", "95"}:
        return
    expected = Reaction.SIGN_ON if row.sign_on_again and row.retry else Reaction.SHOW
    assert expected == reaction(_V, code)


def test_resend_codes_follow_the_retry_flag() -> None:
    """The outstanding queue resends on every retry code but 95 (a reversal) and 77 too
    (a refund: the host never took it, it is made again under a new STAN)."""
    assert (
        {"22", "68", "77", "90", "96", "A0"},
        {"22", "68", "90", "96", "A0"},
    ) == (set(_REVERSAL_RESEND_CODES), set(_REFUND_RESEND_CODES))


def _sent(world: World, mti: str) -> int:
    return sum(1 for frame in world.link.sent if mti_of(frame) == mti)


def test_a_sale_answered_22_signs_on_and_is_retried(world: World) -> None:
    """A verified 22 (terminal state differs from the centre) is declined, the terminal
    signs on again as codes.py says, and the sale goes through under a new STAN."""
    world.terminal.sign_on()
    world.faults(FaultRule(FaultAction.FORCE, kind=Kind.SALE, response_code="22", count=1))
    result = world.terminal.sale(1250, PAN)
    first, second = world.terminal.journal.transactions()
    assert (first.state, first.response_code, second.state, result.approved) == (
        TxnState.DECLINED,
        "22",
        TxnState.APPROVED,
        True,
    )
    assert (_sent(world, "0800"), _sent(world, "0400"), second.stan) == (2, 0, first.stan + 1 + 1)
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_a_sale_answered_22_twice_is_shown_declined(world: World) -> None:
    """One sign-on per transaction (SIGN_ON_RETRIES_MAX): a second 22 is the outcome."""
    world.terminal.sign_on()
    world.faults(FaultRule(FaultAction.FORCE, kind=Kind.SALE, response_code="22", count=2))
    result = world.terminal.sale(1250, PAN)
    assert (result.approved, result.response_code, _sent(world, "0200")) == (False, "22", 2)
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_a_refund_resend_answered_22_signs_on_before_the_next_resend(world: World) -> None:
    """A refund whose answer was lost is resent; a 22 to the resend drops the keys, so the
    next resend goes after a sign-on, and the refund is counted once."""
    world.terminal.sign_on()
    sale = world.terminal.sale(2000, PAN)
    world.faults(
        FaultRule(FaultAction.DROP, kind=Kind.REFUND, count=1),
        FaultRule(FaultAction.FORCE, kind=Kind.REFUND, response_code="22", count=1),
    )
    signed_on_before = _sent(world, "0800")
    refund = world.terminal.refund(sale.stan, 1000)
    refunds = [row for row in world.store.transactions(TERMINAL_ID) if row.kind == Kind.REFUND]
    assert (refund.approved, len(refunds), _sent(world, "0800") - signed_on_before) == (
        True,
        1,
        1,
    )
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_a_settlement_answered_22_signs_on_and_is_sent_again(world: World) -> None:
    """A verified 22 to the 0500 is a sign-on request, as an A0 is: sign on, send the 0500
    again (a repeated 0500 is harmless), and the batch settles balanced."""
    world.terminal.sale(1250, PAN)
    world.faults(FaultRule(FaultAction.FORCE, kind=Kind.SETTLEMENT, response_code="22", count=1))
    signed_on_before = _sent(world, "0800")
    result = world.terminal.settle()
    assert (result.close_reason, _sent(world, "0500"), _sent(world, "0800") - signed_on_before) == (
        "balanced",
        2,
        1,
    )
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_a_batch_upload_answered_22_signs_on_and_is_sent_again(world: World) -> None:
    """A verified 22 to a 0320 signs on and sends that upload again; the batch closes
    uploaded."""
    world.terminal.sale(300, PAN)
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.SALE, count=1))
    world.link.acknowledge_reversal()
    world.terminal.sale(999, PAN)  # the host keeps it, the terminal reversed it: not balanced
    world.faults(FaultRule(FaultAction.FORCE, kind=Kind.BATCH_UPLOAD, response_code="22", count=1))
    result = world.terminal.settle()
    assert (result.close_reason, _sent(world, "0320")) == ("uploaded", 3)  # 1 + 1 again + end
    assert problems(world.terminal, world.store, TERMINAL_ID) == []
