"""A real host core with a clock the test sets, and a till that speaks the wire to it.

Every transaction goes through :class:`posbatch.host.HostCore` (the same path as
production) at the Beijing time the test names, so the host's records are exactly what a
day of trading leaves behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from posbatch.batch.model import Kind, SettlementTotals
from posbatch.clearing import (
    BEIJING,
    CardBin,
    CardClass,
    FeeSchedule,
    Funding,
    MerchantTerms,
    SettlementCycle,
)
from posbatch.host import ClearingStore, HostCore, HostSession, HostStore
from posbatch.host.issuer import TEST_PAN_APPROVED
from posbatch.host.sealing import KeyEncryptionKey
from posbatch.wire import (
    Frame,
    FrameReader,
    Header,
    Message,
    OriginalTransaction,
    RefundRequest,
    Request,
    ReversalRequest,
    SaleRequest,
    SettlementRequest,
    SignOnRequest,
    SignOnResponse,
    Tpdu,
    TransactionResponse,
    VoidRequest,
    decode_message,
    encode_frame,
    encode_message,
    unwrap_working_keys,
)
from testbed import MASTER_KEY, MERCHANT_ID, TERMINAL_ID

OTHER_MERCHANT_ID = "898110054110002"
DEBIT_PAN = TEST_PAN_APPROVED  # 622202… : a debit BIN below
CREDIT_PAN = "6225881234567898"  # 622588… : credit
FOREIGN_PAN = "4111111111111111"  # a Visa: foreign, credit
UNKNOWN_BIN_PAN = "6217003810012345677"  # no BIN entry
RULES_FROM = date(2026, 1, 1)
SET_AT = datetime(2025, 12, 31, 12, 0, tzinfo=UTC)  # rules are entered before they apply


def beijing_time(text: str) -> datetime:
    """``"2026-09-30 10:00"`` Beijing time as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=BEIJING).astimezone(UTC)


def percent(text: str) -> Decimal:
    return Decimal(text) / 100


def standard_rates(
    debit: str = "0.60", credit: str = "0.60", foreign: str = "2.50"
) -> dict[CardClass, Decimal]:
    return {
        CardClass.DOMESTIC_DEBIT: percent(debit),
        CardClass.DOMESTIC_CREDIT: percent(credit),
        CardClass.FOREIGN_DEBIT: percent(foreign),
        CardClass.FOREIGN_CREDIT: percent(foreign),
    }


class SetClock:
    """The host's clock: what the test set, plus one millisecond per reading."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment


@dataclass
class Till:
    """One terminal on the wire: signs on, sells, voids, refunds, reverses, settles."""

    core: HostCore
    terminal_id: str
    merchant_id: str
    batch_no: int = 1
    stan: int = 0
    mak: bytes | None = None
    session: HostSession = field(init=False)

    def __post_init__(self) -> None:
        self.session = HostSession(self.core)

    def _send(self, message: Request) -> Message:
        frame = encode_frame(Frame(Tpdu(), Header(), encode_message(message, mak=self.mak)))
        replies = self.session.receive_data(frame)
        answers = [answer for reply in replies for answer in reply.frames]
        assert len(answers) == 1, replies
        return decode_message(FrameReader().feed(answers[0])[0].body)

    def _next(self) -> int:
        self.stan = self.stan % 999_999 + 1
        return self.stan

    def sign_on(self) -> None:
        answer = self._send(
            SignOnRequest(self.terminal_id, self.merchant_id, self._next(), self.batch_no)
        )
        assert isinstance(answer, SignOnResponse) and answer.response_code == "00", answer
        assert answer.working_keys is not None
        self.mak = unwrap_working_keys(MASTER_KEY, answer.working_keys).mak
        self.batch_no = answer.batch_no

    def _approved(self, message: Request) -> int:
        answer = self._send(message)
        assert isinstance(answer, TransactionResponse), answer
        assert answer.response_code == "00", answer
        return message.stan

    def sale(self, amount_fen: int, pan: str = DEBIT_PAN) -> int:
        """An approved sale; its STAN."""
        return self._approved(
            SaleRequest(
                self.terminal_id, self.merchant_id, self._next(), self.batch_no, amount_fen, pan
            )
        )

    def void(self, stan: int, amount_fen: int, pan: str = DEBIT_PAN) -> int:
        return self._approved(
            VoidRequest(
                self.terminal_id, self.merchant_id, self._next(), self.batch_no, amount_fen,
                pan, OriginalTransaction(self.batch_no, stan),
            )
        )  # fmt: skip

    def refund(
        self, stan: int, amount_fen: int, pan: str = DEBIT_PAN, *, batch_no: int | None = None
    ) -> int:
        return self._approved(
            RefundRequest(
                self.terminal_id, self.merchant_id, self._next(), self.batch_no, amount_fen,
                pan, OriginalTransaction(self.batch_no if batch_no is None else batch_no, stan),
            )
        )  # fmt: skip

    def reverse(
        self, stan: int, amount_fen: int, pan: str = DEBIT_PAN, *, kind: Kind = Kind.SALE
    ) -> None:
        answer = self._send(
            ReversalRequest(
                self.terminal_id, self.merchant_id, stan, self.batch_no, amount_fen, pan,
                original_kind=kind,
            )
        )  # fmt: skip
        assert answer.response_code == "00", answer  # type: ignore[attr-defined]

    def settle(self) -> None:
        """Settle with the host's own totals (balanced), then go on in the next batch."""
        with self.core.store.transaction() as tx:
            terminal = tx.terminal(self.terminal_id)
            assert terminal is not None and terminal.current_batch_id is not None
            totals: SettlementTotals = tx.host_totals(terminal.current_batch_id)
        answer = self._send(
            SettlementRequest(
                self.terminal_id, self.merchant_id, self._next(), self.batch_no, totals
            )
        )
        assert answer.response_code == "00", answer  # type: ignore[attr-defined]
        self.batch_no += 1


class World:
    """A host store (SQLite or PostgreSQL), its core on a set clock, tills, clearing."""

    def __init__(
        self,
        db_url: str,
        *,
        start: datetime | None = None,
        kek: KeyEncryptionKey | None = None,
        pan_key: bytes = b"k" * 32,
    ) -> None:
        self.store = HostStore.open(db_url, pan_key=pan_key, kek=kek)
        self.clock = SetClock(start or beijing_time("2026-09-29 09:00"))
        self.core = HostCore(self.store, clock=self.clock)
        self.clearing = ClearingStore(self.store)
        self.tills: dict[str, Till] = {}

    def close(self) -> None:
        self.store.close()

    def standard_rules(self, *, debit_cap_fen: int | None = 2_000, **terms: Any) -> None:
        """The standard schedule (0.60 %, debit capped), the test BINs, and ``terms``."""
        self.clearing.set_fee_schedule(
            FeeSchedule(
                None, RULES_FROM, standard_rates(), {CardClass.DOMESTIC_DEBIT: debit_cap_fen}
            ),
            now=SET_AT,
        )
        self.clearing.set_card_bins(
            [
                CardBin("622202", Funding.DEBIT, RULES_FROM),
                CardBin("622588", Funding.CREDIT, RULES_FROM),
                CardBin("41", Funding.CREDIT, RULES_FROM),
            ],
            now=SET_AT,
        )
        if terms:
            self.clearing.set_merchant_terms(MerchantTerms(None, RULES_FROM, **terms), now=SET_AT)

    def set_cycle(self, merchant_id: str, cycle: SettlementCycle) -> None:
        self.clearing.set_merchant_terms(MerchantTerms(merchant_id, RULES_FROM, cycle), now=SET_AT)

    def till(self, terminal_id: str = TERMINAL_ID, merchant_id: str = MERCHANT_ID) -> Till:
        """The till of ``terminal_id`` (registered and signed on the first time)."""
        found = self.tills.get(terminal_id)
        if found is None:
            self.store.add_terminal(merchant_id, terminal_id, MASTER_KEY, now=self.clock.now)
            found = self.tills[terminal_id] = Till(self.core, terminal_id, merchant_id)
            found.sign_on()
        return found

    def at(self, text: str) -> World:
        """Move the host's clock to ``text`` (Beijing time); chainable."""
        self.clock.set(beijing_time(text))
        return self
