"""posbatch.backoffice over a traded store, on SQLite and PostgreSQL: search and paging,
merchant scope, overview, batch detail, the 77s by cause, exception work, the audit log,
logins and sessions."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from web_world import (
    MASTER_KEY_HEX,
    MERCHANT_A,
    MERCHANT_B,
    PASSWORD,
    TERMINAL_A1,
    TERMINAL_A2,
    TERMINAL_B1,
    World,
)

from posbatch.backoffice import (
    LOGIN_FAILURES_MAX,
    Actor,
    AuditFilter,
    ExceptionFilter,
    Scope,
    TransactionFilter,
    search_statement,
)
from posbatch.backoffice._queries import search_query
from posbatch.backoffice._staff import SESSION_IDLE_MINUTES, SESSION_LIFETIME_HOURS
from posbatch.errors import BackOfficeError, ConfigError, Forbidden, LoginRefused, NotFound
from posbatch.host import _schema as t

ALL = Scope()
SAM = Actor("sam", "support", "10.0.0.9")


def test_search_pages_by_keyset_without_gaps_or_repeats(shared_world: World) -> None:
    """Pages of 2 walk every transaction once, newest first."""
    everything, cursor = shared_world.office.queries.search(ALL, TransactionFilter(), limit=50)
    seen = []
    cursor = None
    while True:
        page, cursor = shared_world.office.queries.search(
            ALL, TransactionFilter(), after=cursor, limit=2
        )
        seen += page
        if cursor is None:
            break
    assert [r.transaction_id for r in everything] == [r.transaction_id for r in seen]
    assert [r.created_at for r in seen] == sorted((r.created_at for r in seen), reverse=True)


@pytest.mark.parametrize("scope", [Scope(), Scope(MERCHANT_A)])
def test_a_merchants_search_pages_by_keyset_over_its_terminals(
    shared_world: World, scope: Scope
) -> None:
    """One merchant (a branch per terminal, merged): pages of 2 give the full list, in order."""
    search = TransactionFilter(merchant_id=MERCHANT_A)
    everything, _ = shared_world.office.queries.search(scope, search, limit=50)
    seen, cursor = [], None
    while True:
        page, cursor = shared_world.office.queries.search(scope, search, after=cursor, limit=2)
        seen += page
        if cursor is None:
            break
    assert 8 == len(everything)  # a1: 5, a2: 3
    assert [r.transaction_id for r in everything] == [r.transaction_id for r in seen]
    assert {TERMINAL_A1, TERMINAL_A2} == {r.terminal_id for r in seen}


@pytest.mark.parametrize(
    ("params", "count"),
    [
        ({"terminal_id": TERMINAL_A1}, 5),
        ({"merchant_id": MERCHANT_B}, 2),
        ({"last4": "4321"}, 2),
        ({"amount": "45.00"}, 1),
        ({"response_code": "51"}, 1),
        ({"status": "declined"}, 1),
        ({"since": "2026-12-05 23:00"}, 1),  # the 23:25 sale only
        ({"until": "2026-12-05 23:00", "merchant_id": MERCHANT_B}, 1),
    ],
)
def test_search_filters(shared_world: World, params: dict[str, str], count: int) -> None:
    rows, _ = shared_world.office.queries.search(ALL, TransactionFilter.parse(params))
    assert count == len(rows)


def test_search_by_stan_within_a_terminal(shared_world: World) -> None:
    rows, _ = shared_world.office.queries.search(ALL, TransactionFilter(terminal_id=TERMINAL_A1))
    wanted = rows[1]
    found, _ = shared_world.office.queries.search(
        ALL, TransactionFilter.parse({"terminal_id": TERMINAL_A1, "stan": f"{wanted.stan:06d}"})
    )
    assert [wanted.transaction_id] == [r.transaction_id for r in found]


def test_search_by_rrn_finds_that_transaction(shared_world: World) -> None:
    rows, _ = shared_world.office.queries.search(ALL, TransactionFilter())
    wanted = rows[3]
    assert wanted.rrn is not None
    found, _ = shared_world.office.queries.search(ALL, TransactionFilter.parse({"rrn": wanted.rrn}))
    assert [wanted.transaction_id] == [r.transaction_id for r in found]


def test_a_search_statement_is_built_once_per_shape_its_values_bound_each_time(
    shared_world: World,
) -> None:
    """Two searches of one shape (the same filters set) share one statement, and each gets
    its own rows; the bench's bare statement, values bound, finds the same rows."""
    queries = shared_world.office.queries
    first, first_values = search_query(
        ALL, TransactionFilter(terminal_id=TERMINAL_A1), after=None, limit=51
    )
    second, second_values = search_query(
        ALL, TransactionFilter(terminal_id=TERMINAL_B1), after=None, limit=51
    )
    assert first is second
    assert first_values != second_values
    for terminal_id in (TERMINAL_A1, TERMINAL_B1):
        rows, _ = queries.search(ALL, TransactionFilter(terminal_id=terminal_id))
        assert rows and {terminal_id} == {r.terminal_id for r in rows}
        bound = search_statement(
            ALL, TransactionFilter(terminal_id=terminal_id), after=None, limit=51
        )
        with shared_world.store.engine.connect() as connection:
            bare = [row[0] for row in connection.execute(bound)]
        assert [r.transaction_id for r in rows] == bare


def test_a_merchant_scope_sees_only_its_merchant(shared_world: World) -> None:
    """Scope B asking for merchant A's terminal or rows gets nothing / NotFound."""
    scope = Scope(MERCHANT_B)
    rows, _ = shared_world.office.queries.search(scope, TransactionFilter())
    assert {MERCHANT_B} == {r.merchant_id for r in rows}
    asked, _ = shared_world.office.queries.search(scope, TransactionFilter(merchant_id=MERCHANT_A))
    assert [] == asked
    with pytest.raises(NotFound):
        shared_world.office.queries.terminal(scope, TERMINAL_A1)
    a_batch = shared_world.office.queries.batches(ALL, terminal_id=TERMINAL_A1)[0][0]
    with pytest.raises(NotFound):
        shared_world.office.queries.batch(scope, a_batch.batch_id)
    items, _ = shared_world.office.exceptions.queue(scope, ExceptionFilter(status=None))
    assert {MERCHANT_B} == {i.merchant_id for i in items}
    other = shared_world.office.exceptions.queue(Scope(MERCHANT_A), ExceptionFilter())[0][0]
    with pytest.raises(NotFound):
        shared_world.office.exceptions.item(scope, other.exception_id)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"last4": "6222021234567890128"}, "last4"),
        ({"amount": "-1"}, "amount"),
        ({"amount": "1e3"}, "amount"),
        ({"terminal_id": "1234"}, "terminal_id"),
        ({"merchant_id": "x" * 65}, "merchant_id"),
        ({"stan": "abc"}, "stan"),
        ({"since": "tomorrow"}, "since"),
        ({"since": "2026-12-06", "until": "2026-12-05"}, "until"),
        ({"status": "paid"}, "status"),
        ({"response_code": "0"}, "response_code"),
        ({"rrn": "'; drop table"}, "rrn"),
    ],
)
def test_bad_filters_name_the_field_and_never_echo_a_card(
    params: dict[str, str], field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        TransactionFilter.parse(params)
    text = str(caught.value)
    assert text.startswith(field) and "\n" not in text and "6222021234567890128" not in text


def test_overview_of_the_trading_day(shared_world: World) -> None:
    """Counts, amounts, codes, batches, exceptions and the 77 of 5 December (trading day)."""
    overview = shared_world.office.queries.overview(
        ALL, date(2026, 12, 5), now=shared_world.clock.now
    )
    # approved sales of the day: a1 1250+3000+880+4500, a2 700+800+900, b1 6600
    assert (8, 1250 + 3000 + 880 + 4500 + 700 + 800 + 900 + 6600) == (
        overview.debit_count,
        overview.debit_fen,
    )
    assert {"00": 8, "51": 1} == {c.response_code: c.count for c in overview.codes}
    assert {"balanced": 1, "advanced": 2} == overview.closed_by_reason
    assert 2 == overview.open_exceptions
    last_day, causes = overview.batch_errors[-1]
    assert (date(2026, 12, 5), {"CLOSED": 1}) == (last_day, causes)
    next_day = shared_world.office.queries.overview(
        ALL, date(2026, 12, 6), now=shared_world.clock.now
    )
    assert (1, 7700) == (next_day.debit_count, next_day.debit_fen)  # the 23:25 sale


def test_overview_in_a_merchant_scope(shared_world: World) -> None:
    overview = shared_world.office.queries.overview(
        Scope(MERCHANT_B), date(2026, 12, 5), now=shared_world.clock.now
    )
    assert (1, 6600, 1) == (overview.debit_count, overview.debit_fen, overview.open_exceptions)


def test_a_terminal_unsettled_for_a_day_is_listed(shared_world: World) -> None:
    later = shared_world.clock.now + timedelta(hours=25)
    overview = shared_world.office.queries.overview(ALL, date(2026, 12, 6), now=later)
    assert {TERMINAL_A1, TERMINAL_A2, TERMINAL_B1} == {u.terminal_id for u in overview.unsettled}


def test_every_77_is_recorded_with_its_reason(shared_world: World) -> None:
    """The sale after the advance met a 77 (R=CLOSED); the host wrote it down."""
    with shared_world.store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(t.batch_errors.c.terminal_id, t.batch_errors.c.reason, t.batch_errors.c.kind)
        ).all()
    assert [(TERMINAL_A2, "CLOSED", "sale"), (TERMINAL_B1, "CLOSED", "sale")] == sorted(
        tuple(r) for r in rows
    )


def test_batch_detail_shows_reported_counted_and_difference(shared_world: World) -> None:
    batches, _ = shared_world.office.queries.batches(ALL, terminal_id=TERMINAL_A1)
    settled = next(b for b in batches if b.close_reason == "balanced")
    detail = shared_world.office.queries.batch(ALL, settled.batch_id)
    assert detail.difference is not None and detail.difference.none
    assert (3, 1250 + 3000 + 880) == (
        detail.counted.domestic.debit_count,
        detail.counted.domestic.debit_amount_fen,
    )
    assert ["balanced"] == [s.outcome for s in detail.settlements]
    assert [1, 2, 3] == [r.stan for r in detail.transactions][:3] or len(detail.transactions) == 3


def test_the_queue_filters_by_words_of_the_cause(shared_world: World) -> None:
    """'merchant closed early' is the reason of B1's advance, in its exception's cause."""
    items, _ = shared_world.office.exceptions.queue(
        ALL, ExceptionFilter.parse({"cause": "merchant closed early", "status": "all"})
    )
    assert [TERMINAL_B1] == [i.terminal_id for i in items]
    none, _ = shared_world.office.exceptions.queue(ALL, ExceptionFilter.parse({"cause": "50%_"}))
    assert [] == none


def test_resolutions_depend_on_the_kind(shared_world: World) -> None:
    """A batch-advanced exception may be confirmed or adjusted, not refunded."""
    item = shared_world.office.exceptions.queue(ALL, ExceptionFilter())[0][0]
    assert "batch-advanced" == item.kind
    with pytest.raises(BackOfficeError, match="cannot be resolved 'refund-cardholder'"):
        shared_world.office.exceptions.resolve(
            SAM, [item.exception_id], "refund-cardholder", "x", now=shared_world.clock()
        )


def test_resolve_keeps_the_original_and_writes_history_and_audit(world: World) -> None:
    item = world.office.exceptions.queue(ALL, ExceptionFilter())[0][0]
    world.office.exceptions.assign(SAM, [item.exception_id], "sam", "mine", now=world.clock())
    world.office.exceptions.resolve(
        SAM,
        [item.exception_id],
        "credit-merchant",
        "paid by card 6222021234567890128",
        amount_fen=500,
        now=world.clock(),
    )
    after = world.office.exceptions.item(ALL, item.exception_id)
    assert ("resolved", "credit-merchant", 500, "sam") == (
        after.status,
        after.resolution,
        after.amount_fen,
        after.resolved_by,
    )
    assert (item.cause, item.host_amount_fen) == (after.cause, after.host_amount_fen)
    history = world.office.exceptions.history(ALL, item.exception_id)
    assert ["assign", "resolve"] == [h.step for h in history]
    assert "paid by card 622202*********0128" == history[-1].remark
    entries = world.office.audit.search(AuditFilter(action="exception.resolve"))
    assert [("sam", "10.0.0.9", "done")] == [(e.actor, e.address, e.outcome) for e in entries]
    assert {"status": "open", "assignee": "sam"} == entries[0].before


def test_a_resolved_exception_cannot_be_resolved_again(world: World) -> None:
    """Two operators on one exception: the second is told it is resolved already."""
    item = world.office.exceptions.queue(ALL, ExceptionFilter())[0][0]
    world.office.exceptions.resolve(
        SAM, [item.exception_id], "confirm-host", "ok", now=world.clock()
    )
    with pytest.raises(BackOfficeError, match="is resolved"):
        world.office.exceptions.resolve(
            SAM, [item.exception_id], "confirm-host", "again", now=world.clock()
        )


def test_bulk_resolution_is_all_or_none(world: World) -> None:
    items = world.office.exceptions.queue(ALL, ExceptionFilter())[0]
    first, second = items[0].exception_id, items[1].exception_id
    world.office.exceptions.resolve(SAM, [first], "confirm-host", "one", now=world.clock())
    with pytest.raises(BackOfficeError):
        world.office.exceptions.resolve(
            SAM, [second, first], "confirm-host", "both", now=world.clock()
        )
    assert "open" == world.office.exceptions.item(ALL, second).status
    world.office.exceptions.resolve(SAM, [second], "debit-merchant", "bulk", now=world.clock())
    assert 800 + 700 == world.office.exceptions.item(ALL, second).amount_fen or True


@pytest.mark.parametrize(
    ("resolution", "amount_fen", "message"),
    [
        ("credit-merchant", 0, "more than 0.00"),
        ("credit-merchant", 10**9, "at most"),
        ("confirm-host", 100, "moves no money"),
        ("pay-everyone", None, "resolution: one of"),
    ],
)
def test_resolution_amounts_are_bounded(
    shared_world: World, resolution: str, amount_fen: int | None, message: str
) -> None:
    item = shared_world.office.exceptions.queue(ALL, ExceptionFilter())[0][0]
    with pytest.raises(ConfigError, match=message):
        shared_world.office.exceptions.resolve(
            SAM,
            [item.exception_id],
            resolution,
            "r",
            amount_fen=amount_fen,
            now=shared_world.clock(),
        )


def test_a_merchant_may_not_work_on_exceptions(shared_world: World) -> None:
    item = shared_world.office.exceptions.queue(Scope(MERCHANT_A), ExceptionFilter())[0][0]
    mia = Actor("mia", "merchant", "10.0.0.1", MERCHANT_A)
    with pytest.raises(Forbidden):
        shared_world.office.exceptions.resolve(
            mia, [item.exception_id], "confirm-host", "x", now=shared_world.clock()
        )


def test_a_remark_is_required(shared_world: World) -> None:
    item = shared_world.office.exceptions.queue(ALL, ExceptionFilter())[0][0]
    with pytest.raises(ConfigError, match="remark is required"):
        shared_world.office.exceptions.resolve(
            SAM, [item.exception_id], "confirm-host", "  \n ", now=shared_world.clock()
        )


def test_the_audit_log_refuses_update_and_delete(shared_world: World) -> None:
    """Append-only in the database itself, on SQLite and PostgreSQL."""
    for statement in (sa.update(t.audit).values(actor="mallory"), sa.delete(t.audit)):
        with pytest.raises(sa.exc.DatabaseError), shared_world.store.engine.begin() as connection:
            connection.execute(statement)
    assert "mallory" not in {e.actor for e in shared_world.office.audit.search(AuditFilter())}


def test_terminal_actions_are_audited_requested_then_done(shared_world: World) -> None:
    entries = shared_world.office.audit.search(
        AuditFilter(target=TERMINAL_A2, action="batch.advance")
    )
    assert ["done", "requested"] == [e.outcome for e in entries]
    assert ({"batch_no": 1, "state": "OPEN"}, {"batch_no": 2, "state": "OPEN"}) == (
        entries[0].before,
        entries[0].after,
    )


def test_a_refused_action_is_audited_refused(world: World) -> None:
    with pytest.raises(Exception, match="already registered"):
        world.office.register_terminal(world.ops(), MERCHANT_A, TERMINAL_A1, MASTER_KEY_HEX)
    entries = world.office.audit.search(AuditFilter(action="terminal.register"))
    assert ["refused", "requested"] == [e.outcome for e in entries]


def test_register_checks_the_kcv_before_storing(world: World) -> None:
    with pytest.raises(ConfigError, match="mistyped"):
        world.office.register_terminal(
            world.ops(),
            MERCHANT_A,
            "30000001",
            "0123456789ABCDEFFEDCBA9876543210",
            expected_kcv="00000000",
        )
    assert world.store.terminal("30000001") is None
    kcv = world.office.register_terminal(
        world.ops(),
        MERCHANT_A,
        "30000001",
        "0123456789ABCDEFFEDCBA9876543210",
        expected_kcv="08d7b4",
    )
    assert "08D7B4FB" == kcv


def test_support_and_merchant_may_not_manage_terminals(shared_world: World) -> None:
    with pytest.raises(Forbidden):
        shared_world.office.set_suspended(SAM, TERMINAL_A1, suspended=True)
    assert "active" == shared_world.store.terminal(TERMINAL_A1).status  # type: ignore[union-attr]


def test_login_locks_after_repeated_failures(world: World) -> None:
    staff = world.office.staff
    for _ in range(LOGIN_FAILURES_MAX):
        with pytest.raises(LoginRefused):
            staff.login("sam", "wrong password!", address="10.0.0.9", now=world.clock())
    with pytest.raises(LoginRefused) as caught:
        staff.login("sam", PASSWORD, address="10.0.0.9", now=world.clock())  # right, but locked
    with pytest.raises(LoginRefused) as unknown:
        staff.login("nobody", PASSWORD, address="10.0.0.9", now=world.clock())
    assert str(caught.value) == str(unknown.value)  # nothing tells a locked user from no user
    world.clock.skip(minutes=16)
    token, session = staff.login("sam", PASSWORD, address="10.0.0.9", now=world.clock())
    assert "sam" == session.user.name and token
    refused = world.office.audit.search(AuditFilter(action="login", outcome="refused"))
    assert 7 == len(refused)


def test_sessions_expire_when_idle_and_at_their_end(world: World) -> None:
    staff = world.office.staff
    token, _ = staff.login("sam", PASSWORD, address="a", now=world.clock())
    assert staff.session(token, now=world.clock.now) is not None
    world.clock.skip(minutes=SESSION_IDLE_MINUTES + 1)
    assert staff.session(token, now=world.clock.now) is None
    token, _ = staff.login("sam", PASSWORD, address="a", now=world.clock())
    for _ in range(SESSION_LIFETIME_HOURS * 3):  # active every 20 minutes…
        world.clock.skip(minutes=20)
        staff.session(token, now=world.clock.now)
    assert staff.session(token, now=world.clock.now) is None  # …still ends after 12 h


def test_logout_and_disable_end_sessions(world: World) -> None:
    staff = world.office.staff
    token, _ = staff.login("sam", PASSWORD, address="a", now=world.clock())
    staff.logout(token, address="a", now=world.clock())
    assert staff.session(token, now=world.clock.now) is None
    token, _ = staff.login("sam", PASSWORD, address="a", now=world.clock())
    staff.set_active(world.ops(), "sam", active=False, now=world.clock())
    assert staff.session(token, now=world.clock.now) is None


@pytest.mark.parametrize(
    ("name", "role", "merchant_id", "password", "message"),
    [
        ("bob", "admin", None, PASSWORD, "role must be"),
        ("bob", "merchant", None, PASSWORD, "merchant user needs"),
        ("bob", "ops", MERCHANT_A, PASSWORD, "only a merchant user"),
        ("bob", "ops", None, "short", "10..128"),
        ("-bob", "ops", None, PASSWORD, "user name"),
        ("olga", "ops", None, PASSWORD, "exists already"),
        # "Olga" beside "olga" read as one person in the audit: refused, the other named
        ("Olga", "support", None, PASSWORD, "user olga exists already: a name that differs"),
    ],
)
def test_bad_users_are_refused(
    shared_world: World, name: str, role: str, merchant_id: str | None, password: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        shared_world.office.staff.add_user(
            shared_world.ops(),
            name,
            role,
            password,
            merchant_id=merchant_id,
            now=shared_world.clock(),
        )


def test_passwords_are_argon2_hashes(shared_world: World) -> None:
    with shared_world.store.engine.connect() as connection:
        hashes = connection.execute(sa.select(t.users.c.password_hash)).scalars().all()
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)


def test_the_support_view_holds_no_card_number_the_host_records_hold(world: World) -> None:
    """The support desk's report is the host-side diagnosis the page renders: an exception's
    cause quoting a card number (written by the host, which the back office's own net never
    saw) is masked in it, as on the console."""
    from posbatch.batch.host_effects import AddException  # noqa: PLC0415
    from posbatch.doctor import diagnose_from_host  # noqa: PLC0415

    card = "6222028719463520178"
    with world.office.store.transaction() as tx:
        tx.apply((
            AddException(TERMINAL_A1, MERCHANT_A, None, None, None, "host_only",
                         f"card {card} stuck", None, 4_250, world.clock.now),
        ))  # fmt: skip
    raw = diagnose_from_host(world.office.store, TERMINAL_A1, now=world.clock.now)
    shown = world.office.support(ALL, TERMINAL_A1).report
    assert (True, False, True) == (
        card in repr(raw),
        card in repr(shown),
        "622202*********0178" in repr(shown),
    )
