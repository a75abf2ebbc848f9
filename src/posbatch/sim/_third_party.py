"""A third-party terminal: software built from docs/wire.md by someone else, talking to the
simulated host with what must never be approved (issue 11 §2).

It is registered at the host like any terminal, signs on, and sends one sale
per probe (:data:`posbatch.sim._workload.PROBES`): a currency other than CNY,
a malformed currency, a card number the batch upload cannot carry, one whose
check digit fails, a track 2 naming another card, a swipe whose track says the
card expired (with or without field 14). Each must be answered with the
documented refusal (40, 30, 14, 54); anything else — above all an approval —
is reported as a failure of the run. Its requests go straight to the host core
(no link faults): the point is the host's rule, not the network.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Final

from posbatch.batch.counters import next_stan
from posbatch.batch.limits import STAN_MAX
from posbatch.batch.model import CardTotals, Kind, SettlementTotals
from posbatch.host import HostCore, HostStore
from posbatch.sim._workload import Probe
from posbatch.wire import (
    Frame,
    FrameReader,
    Header,
    OriginalTransaction,
    RefundRequest,
    ReversalRequest,
    SaleRequest,
    SettlementRequest,
    SettlementResponse,
    SignOnRequest,
    SignOnResponse,
    Tpdu,
    TransactionResponse,
    decode_message,
    encode_frame,
    encode_message,
    unwrap_working_keys,
)

__all__ = ["THIRD_PARTY_TERMINAL_ID", "ThirdParty"]

THIRD_PARTY_TERMINAL_ID: Final = "99000001"
THIRD_PARTY_MERCHANT_ID: Final = "898110054199999"
PROBE_AMOUNT_FEN: Final = 1_000
CORRECTED_REVERSAL_PAN: Final = "6222021234567890128"  # approved by the default issuer
REFUNDED_FEN: Final = 400  # of the sale reversed under its refund


class ThirdParty:
    """The third-party terminal: sign on, send a probe, read the code."""

    def __init__(self, store: HostStore, generator: random.Random, *, now: datetime) -> None:
        self._master_key = generator.randbytes(16)
        store.add_terminal(
            THIRD_PARTY_MERCHANT_ID, THIRD_PARTY_TERMINAL_ID, self._master_key, now=now
        )
        self._stan = STAN_MAX  # the first STAN sent is the one after: 000001
        self._batch_no = 1

    def _next_stan(self) -> int:
        self._stan = next_stan(self._stan)
        return self._stan

    def _send(self, core: HostCore, body: bytes) -> object | None:
        reply = core.handle_frame(encode_frame(Frame(Tpdu(), Header(), body)))
        if not reply.frames:
            return None
        (frame,) = FrameReader().feed(reply.frames[0])
        return decode_message(frame.body)

    def _sign_on(self, host: HostCore) -> bytes | None:
        """Sign on: the MAK the host handed out (None: no usable answer)."""
        sign_on = SignOnRequest(
            THIRD_PARTY_TERMINAL_ID, THIRD_PARTY_MERCHANT_ID, self._next_stan(), self._batch_no
        )
        answer = self._send(host, encode_message(sign_on))
        if not isinstance(answer, SignOnResponse) or answer.working_keys is None:
            return None
        self._batch_no = answer.batch_no
        return unwrap_working_keys(self._master_key, answer.working_keys).mak

    def probe(self, core: Callable[[], HostCore], probe: Probe) -> str:
        """Sign on, send ``probe`` as a sale; the response code (``"-"``: no answer)."""
        host = core()
        mak = self._sign_on(host)
        if mak is None:
            return "-"
        sale = SaleRequest(
            THIRD_PARTY_TERMINAL_ID,
            THIRD_PARTY_MERCHANT_ID,
            self._next_stan(),
            self._batch_no,
            PROBE_AMOUNT_FEN,
            probe.pan,
            expiry=probe.expiry,
            entry_mode="021" if probe.track2 else "012",
            track2=probe.track2,
            currency=probe.currency,
        )
        result = self._send(host, encode_message(sale, mak=mak))
        return result.response_code if isinstance(result, TransactionResponse) else "-"

    def corrected_reversal(self, core: Callable[[], HostCore]) -> str:
        """A sale, its reversal for the wrong amount, then the right one — a terminal that
        corrects itself — then settlement at zero: ``"balanced"`` when the right one reversed
        the sale (the wrong one is an exception for the back office), else what went wrong.
        (DESIGN.md's duplicate rule: a repeat is the same STAN *and amount*; until 7 Dec the
        host took the right one for a repeat of the wrong one, and the sale stood.)"""
        host = core()
        mak = self._sign_on(host)
        if mak is None:
            return "no sign-on answer"
        stan, batch_no = self._next_stan(), self._batch_no
        sale = SaleRequest(
            THIRD_PARTY_TERMINAL_ID, THIRD_PARTY_MERCHANT_ID, stan, batch_no, PROBE_AMOUNT_FEN,
            CORRECTED_REVERSAL_PAN, expiry="3012",
        )  # fmt: skip
        answer = self._send(host, encode_message(sale, mak=mak))
        if not isinstance(answer, TransactionResponse) or answer.response_code != "00":
            return "sale not approved"
        for amount_fen in (PROBE_AMOUNT_FEN - 1, PROBE_AMOUNT_FEN):
            reversal = ReversalRequest(
                THIRD_PARTY_TERMINAL_ID, THIRD_PARTY_MERCHANT_ID, stan, batch_no, amount_fen,
                CORRECTED_REVERSAL_PAN, Kind.SALE, expiry="3012",
            )  # fmt: skip
            self._send(host, encode_message(reversal, mak=mak))
        return self._settle(host, mak, batch_no, SettlementTotals(), "not balanced: the sale stood")

    def reversal_under_a_refund(self, core: Callable[[], HostCore]) -> str:
        """A sale, a refund of part of it, then a reversal of the sale (a terminal that
        reverses late, or the same terminal on a second line), then a settlement of the sale
        and the refund: ``"balanced"`` when the refund kept the sale standing, else what went
        wrong. (Until 7 Dec the host reversed the sale under its refund: the card was credited
        for a sale it no longer paid for.)"""
        host = core()
        mak = self._sign_on(host)
        if mak is None:
            return "no sign-on answer"
        stan, batch_no = self._next_stan(), self._batch_no
        ids = (THIRD_PARTY_TERMINAL_ID, THIRD_PARTY_MERCHANT_ID)
        pan = CORRECTED_REVERSAL_PAN
        sale = SaleRequest(*ids, stan, batch_no, PROBE_AMOUNT_FEN, pan, expiry="3012")
        answer = self._send(host, encode_message(sale, mak=mak))
        if not isinstance(answer, TransactionResponse) or answer.response_code != "00":
            return "sale not approved"
        original = OriginalTransaction(batch_no, stan, answer.local_date)
        refund = RefundRequest(*ids, self._next_stan(), batch_no, REFUNDED_FEN, pan, original)
        refunded = self._send(host, encode_message(refund, mak=mak))
        if not isinstance(refunded, TransactionResponse) or refunded.response_code != "00":
            return "refund not approved"
        reversal = ReversalRequest(*ids, stan, batch_no, PROBE_AMOUNT_FEN, pan, Kind.SALE)
        self._send(host, encode_message(reversal, mak=mak))
        totals = SettlementTotals(domestic=CardTotals(PROBE_AMOUNT_FEN, 1, REFUNDED_FEN, 1))
        return self._settle(
            host, mak, batch_no, totals, "not balanced: the sale was reversed under its refund"
        )

    def _settle(
        self, host: HostCore, mak: bytes, batch_no: int, totals: SettlementTotals, unbalanced: str
    ) -> str:
        """Settle ``batch_no`` with ``totals``: ``"balanced"``, ``unbalanced`` when the host's
        totals differ, or that no settlement answer came."""
        settlement = SettlementRequest(
            THIRD_PARTY_TERMINAL_ID, THIRD_PARTY_MERCHANT_ID, self._next_stan(), batch_no, totals
        )
        settled = self._send(host, encode_message(settlement, mak=mak))
        if not isinstance(settled, SettlementResponse) or settled.totals is None:
            return "no settlement answer"
        return "balanced" if settled.totals.balanced else unbalanced
