"""Issue 11 on the host: full batches (95), cards at the edges (14/30), currencies (30/40),
one "behind" across the wrap, and batches over capacity from before the rule — closable."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from host_helpers import (
    MASTER_KEY,
    MERCHANT_ID,
    PAN,
    START,
    TERMINAL_ID,
    TEST_KEK,
    StepClock,
    Terminal,
    counting_bytes,
    frame_of,
    read_reply,
    session_terminal,
)

from posbatch.batch.model import (
    BatchReason,
    BatchState,
    CardType,
    Kind,
    Reconciliation,
    SettlementTotals,
)
from posbatch.batch.totals import TOTAL_AMOUNT_FEN_MAX, tally
from posbatch.errors import HostError
from posbatch.host import ExceptionKind, HostCore, HostStore, IssuerRules
from posbatch.host.store import MIGRATIONS, VERSION_TABLE
from posbatch.storage import create_engine
from posbatch.wire import (
    Frame,
    Header,
    OriginalTransaction,
    RefundRequest,
    SaleRequest,
    SettlementRequest,
    SettlementResponse,
    Tpdu,
    UploadRecord,
    VoidRequest,
    decode_batch_detail,
    decode_detail,
    encode_frame,
    encode_message,
)

FOREIGN_PAN = "4111111111111111"
D = CardType.DOMESTIC


def code(message: object) -> str:
    return str(message.response_code)  # type: ignore[attr-defined]


def detail_items(message: object) -> dict[str, str]:
    return decode_detail(message.detail or "")  # type: ignore[attr-defined]


def fill(
    core: HostCore, term: Terminal, count: int, *, pan: str = PAN, amount_fen: int = 100
) -> list[str]:
    """``count`` sales sent as groups of 500 frames (one commit each); their codes."""
    codes: list[str] = []
    for start in range(0, count, 500):
        frames = [
            frame_of(
                SaleRequest(
                    TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, amount_fen, pan
                ),
                term.mak,
            )
            for _ in range(min(500, count - start))
        ]
        codes.extend(code(read_reply(reply)) for reply in core.handle_frames(frames))
    return codes


@pytest.fixture
def rich_core(store: HostStore) -> HostCore:
    """A host whose issuer approves any amount (to reach the n12 amount limit)."""
    return HostCore(
        store,
        clock=StepClock(),
        random_bytes=counting_bytes(),
        issuer=IssuerRules(amount_limit_fen=TOTAL_AMOUNT_FEN_MAX),
    )


# --- one "behind", across the wrap ------------------------------------------------------


def _host_batch(store: HostStore, batch_no: int) -> None:
    with store.transaction() as tx:
        tx.set_batch(store.batches(TERMINAL_ID)[0].batch_id, batch_no=batch_no)


def test_behind_across_the_wrap_is_behind(term: Terminal, store: HostStore) -> None:
    """Host at 000001 after the wrap: a sale naming 999998 is behind (not ahead)."""
    _host_batch(store, 1)
    term.batch_no = 999_998
    answer = term.sale(100)
    assert ("77", BatchReason.BEHIND) == (
        code(answer),
        decode_batch_detail(answer.detail).reason,
    )  # type: ignore[union-attr, attr-defined]


def test_ahead_across_the_wrap_is_ahead(term: Terminal, store: HostStore) -> None:
    """Host at 999999: a sale naming 000001 is ahead (it comes after the wrap)."""
    _host_batch(store, 999_999)
    term.batch_no = 1
    answer = term.sale(100)
    assert ("77", BatchReason.AHEAD) == (
        code(answer),
        decode_batch_detail(answer.detail).reason,
    )  # type: ignore[union-attr, attr-defined]


def test_settlement_of_an_unknown_batch_behind_the_wrap(term: Terminal, store: HostStore) -> None:
    """A 0500 naming 999998 while the host is at 000002 is 77 BEHIND."""
    _host_batch(store, 2)
    answer = term.settle(SettlementTotals(), batch_no=999_998)
    detail = decode_batch_detail(answer.detail)  # type: ignore[attr-defined]
    assert ("77", BatchReason.BEHIND) == (code(answer), detail.reason if detail else None)


# --- card numbers at the edges ----------------------------------------------------------


@pytest.mark.parametrize(
    ("pan", "expected"),
    [
        ("622202123452", "00"),  # 12 digits, Luhn-valid: the shortest card number
        ("6222021234566", "00"),  # 13 digits
        (PAN, "00"),  # 19 digits
        ("0000000000000000", "14"),  # Luhn-valid, starts with 0: upload could not carry it
        ("0622021234567890125", "14"),  # 19 digits starting with 0
        ("6222021234567890123", "14"),  # Luhn failure
        ("622202123457", "14"),  # 12 digits, Luhn failure
    ],
)
def test_card_numbers_at_the_edges(
    term: Terminal, store: HostStore, pan: str, expected: str
) -> None:
    """Only a card number batch upload can carry and whose check digit holds is approved."""
    answer = term.sale(100, pan=pan)
    rows = store.transactions(TERMINAL_ID)
    assert (expected, expected == "00") == (code(answer), rows[-1].status == "approved")


def _raw_sale_body(term: Terminal, pan_field: bytes) -> bytes:
    """A MACed 0200 whose field 2 (length prefix included) is replaced by ``pan_field``."""
    body = encode_message(
        SaleRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, 100, PAN),
        mak=term.mak,
    )
    start = 10  # MTI 2 + bitmap 8: field 2 comes first
    old = 1 + (int(body[start : start + 1].hex()) + 1) // 2
    return body[:start] + pan_field + body[start + old :]


@pytest.mark.parametrize(
    ("pan_field", "expected"),
    [
        # 20 digits: field 2 is n..19; the salvage read walks past it to 41/42: 30
        (bytes.fromhex("20") + bytes.fromhex("62220212345678901283"), "30"),
        (bytes.fromhex("11") + bytes.fromhex("622202123450"), "30"),  # 11 digits
        (bytes.fromhex("16") + bytes.fromhex("6222021234A67890"), "30"),  # a nibble A
    ],
)
def test_unreadable_card_numbers_are_format_errors(
    core: HostCore, term: Terminal, store: HostStore, pan_field: bytes, expected: str | None
) -> None:
    """A field 2 the profile cannot carry (20 digits, 11, non-digits) is never approved."""
    frame = encode_frame(Frame(Tpdu(), Header(), _raw_sale_body(term, pan_field)))
    reply = core.handle_frame(frame)
    answered = code(read_reply(reply)) if reply.frames else None
    assert (expected, []) == (answered, store.transactions(TERMINAL_ID))
    assert reply.log.error is not None and "field 2" in reply.log.error


@pytest.mark.parametrize(
    ("track2", "expected"),
    [
        (f"{PAN}=30121010000", "00"),  # swiped: the same card on the stripe
        ("6222020000000000018=30121010000", "14"),  # another (valid) card on the stripe
        (f"{PAN}", "14"),  # no separator: no card number on the stripe
        ("0000000000000000=3012", "14"),  # the stripe's card starts with 0
    ],
)
def test_track2_must_name_the_card_of_field_2(term: Terminal, track2: str, expected: str) -> None:
    """Track 2 and field 2 are one card: if they differ the host could not say which it approved."""
    answer = term.sale(100, track2=track2, entry_mode="021")
    assert expected == code(answer)


def test_manual_entry_without_track2_is_approved(term: Terminal) -> None:
    """A key-entered card (entry mode 012, no track 2) is judged on field 2 alone."""
    assert "00" == code(term.sale(100, entry_mode="012"))


def test_a_void_or_refund_with_a_leading_zero_card_is_refused(term: Terminal) -> None:
    """The card rules hold for credits too (14), and nothing is counted."""
    sale = term.sale(500)
    assert "00" == code(sale)
    void = term.request(
        VoidRequest(
            TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, 500, "0000000000000000",
            OriginalTransaction(term.batch_no, sale.stan),  # type: ignore[attr-defined]
        )
    )  # fmt: skip
    refund = term.request(
        RefundRequest(
            TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, 100, "0000000000000000",
            OriginalTransaction(term.batch_no, sale.stan),  # type: ignore[attr-defined]
        )
    )  # fmt: skip
    assert ("14", "14") == (code(void), code(refund))


# --- currency ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "expected"),
    [("156", "00"), ("840", "40"), ("978", "40"), ("AB!", "30"), ("15 ", "30"), ("0x1", "30")],
)
def test_only_cny_is_approved(
    term: Terminal, store: HostStore, currency: str, expected: str
) -> None:
    """49=156 is approved; another ISO code is 40 (not supported); a malformed one is 30."""
    answer = term.sale(700, currency=currency)
    counted = [row for row in store.transactions(TERMINAL_ID) if row.status == "approved"]
    assert (expected, expected == "00") == (code(answer), bool(counted))


def test_settlement_in_another_currency_is_refused(term: Terminal, store: HostStore) -> None:
    """A 0500 whose 49 is not 156 is answered 40 and changes nothing."""
    term.sale(700)
    answer = term.request(
        SettlementRequest(
            TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no,
            tally([(Kind.SALE, 700, D)]).totals(), currency="840",
        )
    )  # fmt: skip
    assert ("40", BatchState.OPEN) == (code(answer), store.batches(TERMINAL_ID)[0].state)


# --- a full batch -----------------------------------------------------------------------


def test_the_thousandth_domestic_sale_is_refused_95(
    core: HostCore, term: Terminal, store: HostStore
) -> None:
    """999 domestic sales fit field 48; the 1,000th is answered 95 R=FULL F=DOMESTIC_DEBIT_COUNT,
    and the batch still settles balanced."""
    assert ["00"] * 999 == fill(core, term, 999)
    refused = term.sale(100)
    items = detail_items(refused)
    foreign = term.sale(100, pan=FOREIGN_PAN)  # the other card class still has room
    settled = term.settle(
        tally([(Kind.SALE, 100, D)] * 999 + [(Kind.SALE, 100, CardType.FOREIGN)]).totals()
    )
    assert isinstance(settled, SettlementResponse) and settled.totals is not None
    assert (
        "95", "FULL", "DOMESTIC_DEBIT_COUNT", "00", True
    ) == (
        code(refused), items.get("R"), items.get("F"), code(foreign), settled.totals.balanced,
    )  # fmt: skip


def test_full_in_one_group(core: HostCore, term: Terminal) -> None:
    """The 999th and the 1,000th sale in the same group commit: the second is refused."""
    assert ["00"] * 998 == fill(core, term, 998)
    assert ["00", "95"] == fill(core, term, 2)


def test_a_repeated_95_is_answered_95_again(core: HostCore, term: Terminal) -> None:
    """A 95 is a decline like any other: the same request again gets the same answer."""
    fill(core, term, 999)
    request = SaleRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, 100, PAN)
    assert ["95", "95"] == [code(term.request(request)), code(term.request(request))]


@pytest.fixture
def capped_core(store: HostStore) -> HostCore:
    """A host that caps each field-48 counter at 3 (an acquirer's lower cap): the same rule as
    field 48's 999, met in a few requests."""
    return HostCore(store, clock=StepClock(), random_bytes=counting_bytes(), batch_count_max=3)


def _refund(term: Terminal, sale: object, amount_fen: int = 1) -> object:
    return term.request(
        RefundRequest(
            TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, amount_fen, PAN,
            OriginalTransaction(term.batch_no, sale.stan),  # type: ignore[attr-defined]
        )
    )  # fmt: skip


def test_credits_have_their_own_counter(capped_core: HostCore) -> None:
    """Refunds are credits: with a cap of 3 the 4th refund is 95 F=DOMESTIC_CREDIT_COUNT,
    while a 4th credit on the foreign side and more sales are still taken."""
    term = session_terminal(capped_core)
    term.sign_on()
    sale = term.sale(5_000)
    refunds = [_refund(term, sale) for _ in range(4)]
    assert (["00", "00", "00", "95"], "DOMESTIC_CREDIT_COUNT") == (
        [code(refund) for refund in refunds], detail_items(refunds[-1]).get("F")
    )  # fmt: skip
    assert ["00", "00"] == [code(term.sale(100)), code(term.sale(100, pan=FOREIGN_PAN))]


def test_a_void_into_a_full_credit_counter_is_refused_and_the_sale_stands(
    capped_core: HostCore, store: HostStore
) -> None:
    """A void that would be one credit too many is 95; its sale is not voided."""
    term = session_terminal(capped_core)
    term.sign_on()
    sale = term.sale(5_000)
    for _ in range(3):
        _refund(term, sale)
    other = term.sale(300)
    void = term.void(other.stan, 300)  # type: ignore[attr-defined]
    statuses = {row.stan: row.status for row in store.transactions(TERMINAL_ID)}
    assert ("95", "approved") == (code(void), statuses[other.stan])  # type: ignore[attr-defined]


def test_the_host_cap_is_1_to_999(store: HostStore) -> None:
    """A cap beyond what field 48 counts, or below one, is refused."""
    for wrong in (0, 1_000):
        with pytest.raises(HostError):
            HostCore(store, clock=StepClock(), batch_count_max=wrong)


def test_amounts_that_would_overflow_n12_are_refused(rich_core: HostCore) -> None:
    """Two sales of 999,999,999,999 fen cannot be summed in 12 digits: the second is 95."""
    term = session_terminal(rich_core)
    term.sign_on()
    first = term.sale(TOTAL_AMOUNT_FEN_MAX)
    second = term.sale(1)
    foreign = term.sale(TOTAL_AMOUNT_FEN_MAX, pan=FOREIGN_PAN)
    assert ("00", "95", "DOMESTIC_DEBIT_AMOUNT", "00") == (
        code(first), code(second), detail_items(second).get("F"), code(foreign)
    )  # fmt: skip


def test_the_bound_is_kept_with_the_batch(core: HostCore, term: Terminal, store: HostStore) -> None:
    """approved_count / approved_amount_fen count approvals once, declines never."""
    term.sale(100)
    term.sale(250)
    term.sale(100, pan="6222021234567890123")  # 14
    with store.transaction() as tx:
        bound = tx.batch_bound(store.batches(TERMINAL_ID)[0].batch_id)
    assert (2, 350) == bound


# --- batches over capacity from before the rule ------------------------------------------

OLD_BATCH_SALES = 1_003
PAN_KEY = b"k" * 32


def _hmac(pan: str) -> str:
    return hmac.digest(PAN_KEY, pan.encode("ascii"), "sha256").hex()


def _old_store(url: str) -> None:
    """A store migrated only to the first revision (before the capacity rule) whose open
    batch 000001 holds 1,003 approved domestic sales and 1 foreign one (signed on)."""
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["version_table"] = VERSION_TABLE
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "host0001")
    now = START.replace(tzinfo=None)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO host_terminals (terminal_id, merchant_id, master_key, status, "
                "signed_on, created_at) VALUES (:t, :m, :k, 'active', :f, :now)"
            ),
            {"t": TERMINAL_ID, "m": MERCHANT_ID, "k": MASTER_KEY, "f": False, "now": now},
        )
        batch_id = connection.execute(
            sa.text(
                "INSERT INTO host_batches (terminal_id, batch_no, state, opened_at) "
                "VALUES (:t, 1, 'OPEN', :now) RETURNING batch_id"
            ),
            {"t": TERMINAL_ID, "now": now},
        ).scalar_one()
        connection.execute(
            sa.text("UPDATE host_terminals SET current_batch_id = :b"), {"b": batch_id}
        )
        rows = [
            {
                "stan": stan, "kind": "sale", "amount": 100 + stan, "card": "00",
                "masked": "622202*********0128", "hmac": _hmac(PAN), "t": TERMINAL_ID,
                "now": now,
            }
            for stan in range(2, 2 + OLD_BATCH_SALES)
        ]  # fmt: skip
        for row in rows:
            row["b"] = batch_id
        rows.append(
            {
                "stan": 2 + OLD_BATCH_SALES, "kind": "sale", "amount": 999, "card": "01",
                "masked": "411111******1111", "hmac": _hmac(FOREIGN_PAN), "t": TERMINAL_ID,
                "now": now, "b": batch_id,
            }
        )  # fmt: skip
        connection.execute(
            sa.text(
                "INSERT INTO host_transactions (batch_id, terminal_id, stan, kind, amount_fen, "
                "card_type, pan_hmac, pan_masked, status, response_code, refunded_fen, "
                "request_digest, created_at) VALUES (:b, :t, :stan, :kind, :amount, :card, "
                ":hmac, :masked, 'approved', '00', 0, 'd', :now)"
            ),
            rows,
        )
    engine.dispose()


@pytest.fixture
def old_store(db_url: str) -> Iterator[HostStore]:
    _old_store(db_url)
    store = HostStore.open(db_url, pan_key=PAN_KEY, kek=TEST_KEK)  # seals its clear TMK
    yield store
    store.close()


def _old_tally_entries() -> list[tuple[Kind, int, CardType]]:
    entries = [(Kind.SALE, 100 + stan, D) for stan in range(2, 2 + OLD_BATCH_SALES)]
    return [*entries, (Kind.SALE, 999, CardType.FOREIGN)]


def test_migration_fills_the_bound_of_old_batches(old_store: HostStore) -> None:
    """The migration counts what each batch already holds: the old batch is seen as over."""
    batch_id = old_store.batches(TERMINAL_ID)[0].batch_id
    with old_store.transaction() as tx:
        bound = tx.batch_bound(batch_id)
        fits = tx.batch_tally(batch_id).fits()
    assert ((OLD_BATCH_SALES + 1, sum(a for _k, a, _c in _old_tally_entries())), False) == (
        bound,
        fits,
    )


def test_an_old_batch_over_capacity_refuses_more_and_settles_by_upload(
    old_store: HostStore,
) -> None:
    """Over capacity already: a new sale is 95; the flagged 0500 is answered not balanced with
    capped totals; the upload of every record and its 207 close the batch with a
    batch-over-capacity exception, and the next batch takes sales again."""
    core = HostCore(
        old_store, clock=StepClock(START + timedelta(hours=1)), random_bytes=counting_bytes()
    )
    term = session_terminal(core, stan=5_000)
    term.sign_on()
    refused = term.sale(100)
    capped = tally(_old_tally_entries()).capped_totals()
    settled = term.settle(capped)
    assert isinstance(settled, SettlementResponse) and settled.totals is not None
    records = [UploadRecord(D, stan, PAN, 100 + stan) for stan in range(2, 2 + OLD_BATCH_SALES)] + [
        UploadRecord(CardType.FOREIGN, 2 + OLD_BATCH_SALES, FOREIGN_PAN, 999)
    ]
    answers = [code(term.upload(tuple(records[i : i + 8]))) for i in range(0, len(records), 8)]
    ended = term.upload_end(len(records))
    term.batch_no = 2
    after = term.sale(100)
    kinds = [exc.kind for exc in old_store.exceptions(TERMINAL_ID)]
    batches = old_store.batches(TERMINAL_ID)
    assert (
        "95",
        (Reconciliation.ERROR, Reconciliation.REQUEST),
        (Reconciliation.NOT_BALANCED, Reconciliation.NOT_BALANCED),
        (999, 999_999_999_999 >= settled.totals.domestic.debit_amount_fen),
        {"00"},
        "00",
        "00",
        [BatchState.CLOSED, BatchState.OPEN],
    ) == (
        code(refused),
        (capped.domestic.reconciliation, capped.foreign.reconciliation),
        (settled.totals.domestic.reconciliation, settled.totals.foreign.reconciliation),
        (settled.totals.domestic.debit_count, True),
        set(answers),
        code(ended),
        code(after),
        [batch.state for batch in sorted(batches, key=lambda b: b.batch_no)],
    )
    assert [ExceptionKind.BATCH_OVER_CAPACITY] == kinds  # every record matched the host's


def test_a_closed_batch_over_capacity_settled_again_is_an_error_on_record(
    old_store: HostStore,
) -> None:
    """Closed by upload over capacity; another journal's 0500 for it (fewer sales) cannot be
    compared: code 3 and one settled-again-differs record, not a 96 (the host's totals of
    such a batch do not fit field 48); its own 0500 again is still a repeat."""
    core = HostCore(
        old_store, clock=StepClock(START + timedelta(hours=1)), random_bytes=counting_bytes()
    )
    term = session_terminal(core, stan=5_000)
    term.sign_on()
    capped = tally(_old_tally_entries()).capped_totals()
    term.settle(capped)
    records = [UploadRecord(D, stan, PAN, 100 + stan) for stan in range(2, 2 + OLD_BATCH_SALES)] + [
        UploadRecord(CardType.FOREIGN, 2 + OLD_BATCH_SALES, FOREIGN_PAN, 999)
    ]
    for i in range(0, len(records), 8):
        term.upload(tuple(records[i : i + 8]))
    term.upload_end(len(records))
    older = tally(_old_tally_entries()[:10]).totals()
    late = term.settle(older, batch_no=1)
    repeat = term.settle(capped, batch_no=1)
    kinds = sorted(exc.kind for exc in old_store.exceptions(TERMINAL_ID))
    assert isinstance(late, SettlementResponse) and late.totals is not None
    assert isinstance(repeat, SettlementResponse) and repeat.totals is not None
    assert ("00", Reconciliation.ERROR, "00", Reconciliation.NOT_BALANCED) == (
        late.response_code,
        late.totals.domestic.reconciliation,
        repeat.response_code,
        repeat.totals.foreign.reconciliation,
    )
    assert [ExceptionKind.BATCH_OVER_CAPACITY, ExceptionKind.SETTLED_AGAIN_DIFFERS] == kinds


def test_an_old_batch_over_capacity_can_be_closed_by_the_back_office(old_store: HostStore) -> None:
    """advance-batch closes it (capped totals recorded) with batch-advanced and
    batch-over-capacity records; a later 0500 for it is answered code 3, never stuck."""
    core = HostCore(
        old_store, clock=StepClock(START + timedelta(hours=1)), random_bytes=counting_bytes()
    )
    new_batch_no = core.advance_batch(TERMINAL_ID, "over capacity")
    term = session_terminal(core, stan=5_000)
    term.sign_on()
    term.batch_no = 1
    late = term.settle(tally(_old_tally_entries()).capped_totals())
    kinds = sorted(exc.kind for exc in old_store.exceptions(TERMINAL_ID))
    closed = next(b for b in old_store.batches(TERMINAL_ID) if b.batch_no == 1)
    assert isinstance(late, SettlementResponse) and late.totals is not None
    assert (2, BatchState.CLOSED, Reconciliation.ERROR) == (
        new_batch_no, closed.state, late.totals.domestic.reconciliation
    )  # fmt: skip
    assert {"batch-advanced", "batch-over-capacity", "settled-after-advance"} == set(kinds)


def test_bound_of_a_new_batch_starts_at_zero(
    core: HostCore, term: Terminal, store: HostStore
) -> None:
    """After a balanced settlement the next batch's bound starts again from 0."""
    term.sale(100)
    term.settle(tally([(Kind.SALE, 100, D)]).totals())
    term.batch_no = 2
    term.sale(40)
    with store.transaction() as tx:
        bounds = [tx.batch_bound(batch.batch_id) for batch in store.batches(TERMINAL_ID)]
    assert sorted([(1, 100), (1, 40)]) == sorted(bounds)


def test_a_closed_batch_settled_again_with_other_totals_is_recorded_once(
    term: Terminal, store: HostStore
) -> None:
    """The same 0500 again (a lost answer) changes nothing; other totals for the closed batch
    (a journal restored from an older backup) get the host's totals with code 3, twice the
    same, and one settled-again-differs record — the host's records stand."""
    term.sale(100)
    term.sale(200)
    both = tally([(Kind.SALE, 100, D), (Kind.SALE, 200, D)]).totals()
    first = term.settle(both)
    again = term.settle(both, batch_no=1)
    older = tally([(Kind.SALE, 100, D)]).totals()
    late = [term.settle(older, batch_no=1) for _ in range(2)]
    kinds = [exc.kind for exc in store.exceptions(TERMINAL_ID)]
    assert isinstance(first, SettlementResponse) and isinstance(again, SettlementResponse)
    assert isinstance(late[0], SettlementResponse) and isinstance(late[1], SettlementResponse)
    assert first.totals is not None
    error = first.totals.with_reconciliation(Reconciliation.ERROR)
    assert (first.totals, error, error) == (again.totals, late[0].totals, late[1].totals)
    assert [ExceptionKind.SETTLED_AGAIN_DIFFERS] == kinds
