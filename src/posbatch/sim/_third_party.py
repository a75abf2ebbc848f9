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
from posbatch.host import HostCore, HostStore
from posbatch.sim._workload import Probe
from posbatch.wire import (
    Frame,
    FrameReader,
    Header,
    SaleRequest,
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

    def probe(self, core: Callable[[], HostCore], probe: Probe) -> str:
        """Sign on, send ``probe`` as a sale; the response code (``"-"``: no answer)."""
        host = core()
        sign_on = SignOnRequest(
            THIRD_PARTY_TERMINAL_ID, THIRD_PARTY_MERCHANT_ID, self._next_stan(), self._batch_no
        )
        answer = self._send(host, encode_message(sign_on))
        if not isinstance(answer, SignOnResponse) or answer.working_keys is None:
            return "-"
        self._batch_no = answer.batch_no
        mak = unwrap_working_keys(self._master_key, answer.working_keys).mak
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
