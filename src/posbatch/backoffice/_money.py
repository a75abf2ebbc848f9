"""The merchant's money in the back office: statements (对账单) and fee schedules (手续费).

Every figure comes from clearing's own store (:class:`~posbatch.host.ClearingStore`),
through the very functions ``posbatch clearing statement`` and ``posbatch host set-fees``
call: a statement on a page is the statement the CLI prints, and a fee schedule set on the
fee page is parsed by :func:`~posbatch.clearing.parse_fee_schedule` and refused for a day
already under way or cleared exactly as the CLI refuses it. Setting one is audited
(``fees.set``: requested, then done or refused, with the schedule in force before and the
one set after).

A statement page shows the statement's figures whole (totals, by card type and kind,
batches, adjustments, exceptions) and its lines a page at a time
(:func:`statement_page`, :data:`STATEMENT_PAGE_LINES` a page): a merchant may have
thousands of lines a day, and a page of all of them (each line twice, as a table row
and in the text) took longer to render than to compute. The whole statement is its
exports: the CSV and the text, as ``posbatch clearing statement`` writes them.

:func:`fee_book` and :func:`statement_page` are pure: the rules in force and the day in,
what the fee page shows out; a statement and a page number in, that page's lines out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from posbatch.backoffice._audit import Actor
from posbatch.backoffice._filters import Scope, merchant_id_param
from posbatch.backoffice._staff import UNKNOWN_MERCHANT, Permission
from posbatch.batch.money import format_fen
from posbatch.clearing import (
    ADJUSTMENT_LABELS,
    CardClass,
    ClearingRules,
    FeeSchedule,
    MerchantTerms,
    Statement,
    StatementLine,
    cleared_note,
    exception_settlement,
    format_rate,
    parse_fee_schedule,
    render_statement,
    statement_csv,
)
from posbatch.errors import BackOfficeError, ClearingError, ConfigError, NotFound
from posbatch.host import ClearingStore
from posbatch.host.store import HostStore

__all__ = [
    "ADJUSTMENT_LABELS",
    "FEE_FIELDS",
    "STATEMENT_PAGE_LINES",
    "FeeField",
    "Money",
    "OwnerFees",
    "ScheduleEntry",
    "StatementPage",
    "TermsEntry",
    "cleared_note",
    "exception_settlement",
    "fee_book",
    "render_statement",
    "schedule_rates",
    "statement_csv",
    "statement_page",
    "statement_page_param",
]

# The instant rate when the form leaves it empty (what `host set-fees` defaults to).
INSTANT_RATE_DEFAULT: Final = "0.00%"
FEE_TEXT_CHARS_MAX: Final = 32
# Lines of a statement on one page (the whole statement is its CSV and text exports).
STATEMENT_PAGE_LINES: Final = 200
# The most pages a URL may ask for: 999 debits and 999 credits per card class a batch,
# 999,999 batch numbers — far beyond any day's statement; digits beyond are refused.
STATEMENT_PAGE_DIGITS_MAX: Final = 6


@dataclass(frozen=True, slots=True)
class FeeField:
    """One card class on the fee form: its rate and cap fields (named like set-fees' options)."""

    card_class: CardClass
    rate_name: str
    cap_name: str

    @property
    def label(self) -> str:
        return self.card_class.label


FEE_FIELDS: Final = (
    FeeField(CardClass.DOMESTIC_DEBIT, "debit", "debit_cap"),
    FeeField(CardClass.DOMESTIC_CREDIT, "credit", "credit_cap"),
    FeeField(CardClass.FOREIGN_DEBIT, "foreign_debit", "foreign_debit_cap"),
    FeeField(CardClass.FOREIGN_CREDIT, "foreign_credit", "foreign_credit_cap"),
)
FORM_NAMES: Final = (
    "merchant_id",
    "effective_from",
    "instant",
    *(name for field in FEE_FIELDS for name in (field.rate_name, field.cap_name)),
)

IN_FORCE: Final = "in force 生效中"
UPCOMING: Final = "upcoming 待生效"
SUPERSEDED: Final = "superseded 已替换"


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """A fee schedule as the page shows it: rates and caps as people write them."""

    schedule: FeeSchedule
    state: str  # IN_FORCE / UPCOMING / SUPERSEDED
    rates: tuple[tuple[str, str, str], ...]  # (card class label, rate, cap in yuan or "")
    instant: str


@dataclass(frozen=True, slots=True)
class TermsEntry:
    terms: MerchantTerms
    state: str


@dataclass(frozen=True, slots=True)
class OwnerFees:
    """The fees of one merchant (or the standard, ``merchant_id`` None), newest first."""

    merchant_id: str | None
    in_force: ScheduleEntry | None  # what prices today's sales (None: nothing would)
    standard_applies: bool  # no schedule of its own in force: the standard's prices them
    terms_in_force: MerchantTerms
    schedules: tuple[ScheduleEntry, ...]
    terms: tuple[TermsEntry, ...]


@dataclass(frozen=True, slots=True)
class StatementPage:
    """One page of a statement's lines: lines ``first``–``last`` (1-based) of ``count``."""

    lines: tuple[StatementLine, ...]
    number: int  # 1-based
    pages: int  # at least 1 (an empty statement has one page, empty)
    count: int  # the statement's lines
    first: int  # the number of the page's first line (0: no lines)

    @property
    def last(self) -> int:
        return self.first + len(self.lines) - 1 if self.lines else 0

    @property
    def previous(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def following(self) -> int | None:
        return self.number + 1 if self.number < self.pages else None


def statement_page_param(params: Mapping[str, str], name: str = "page") -> int:
    """The page a URL asks for: 1 when absent; digits only (a one-line error otherwise)."""
    value = params.get(name, "").strip()
    if not value:
        return 1
    if not (value.isascii() and value.isdigit()) or len(value) > STATEMENT_PAGE_DIGITS_MAX:
        raise ConfigError(f"{name}: a page number from 1")
    number = int(value)
    if number < 1:
        raise ConfigError(f"{name}: a page number from 1")
    return number


def statement_page(
    statement: Statement, number: int, *, lines_per_page: int = STATEMENT_PAGE_LINES
) -> StatementPage:
    """Page ``number`` (1-based) of ``statement``'s lines, in the statement's order. A page
    past the last is a one-line error that says how many there are."""
    count = len(statement.lines)
    pages = max(1, -(-count // lines_per_page))
    if not 1 <= number <= pages:
        raise ConfigError(f"page: this statement has {pages} page(s) of lines")
    start = (number - 1) * lines_per_page
    lines = statement.lines[start : start + lines_per_page]
    return StatementPage(lines, number, pages, count, start + 1 if lines else 0)


def _state(
    effective_from: date,
    entry_id: int,
    in_force_id: int | None,
    today: date,
    last_ids: Mapping[date, int],
) -> str:
    """``last_ids``: the newest entry of the owner from each day, the one that day takes (a
    correction replaces what was entered before it). An upcoming entry replaced so was
    shown "upcoming" beside its correction, as if both were to take effect."""
    if entry_id == in_force_id:
        return IN_FORCE
    if effective_from > today and entry_id == last_ids[effective_from]:
        return UPCOMING
    return SUPERSEDED


def _last_ids(entries: Iterable[tuple[date, int]]) -> dict[date, int]:
    """The newest entry id of each effective day."""
    last: dict[date, int] = {}
    for effective_from, entry_id in entries:
        last[effective_from] = max(entry_id, last.get(effective_from, entry_id))
    return last


def schedule_rates(schedule: FeeSchedule) -> tuple[tuple[str, str, str], ...]:
    """(card class label, rate like 0.60%, cap in yuan or "") of each card class."""
    rates = []
    for card_class in CardClass:
        cap = schedule.cap_fen(card_class)
        rates.append((
            card_class.label,
            format_rate(schedule.rates[card_class]),
            "" if cap is None else format_fen(cap),
        ))  # fmt: skip
    return tuple(rates)


def _entry(schedule: FeeSchedule, state: str) -> ScheduleEntry:
    return ScheduleEntry(
        schedule, state, schedule_rates(schedule), format_rate(schedule.instant_rate)
    )


def _own_in_force_id(entries: Iterable[FeeSchedule | MerchantTerms], today: date) -> int | None:
    best: tuple[date, int] | None = None
    for entry in entries:
        key = (
            entry.effective_from,
            entry.schedule_id if isinstance(entry, FeeSchedule) else entry.terms_id,
        )
        if entry.effective_from <= today and (best is None or key > best):
            best = key
    return None if best is None else best[1]


def fee_book(rules: ClearingRules, merchant_ids: Iterable[str], today: date) -> list[OwnerFees]:
    """Per owner — the standard first, then every merchant given or with a rule of its
    own — the schedule and terms in force on trading day ``today`` and their history."""
    owners: list[str | None] = [None]
    named = {s.merchant_id for s in rules.fee_schedules} | {
        t.merchant_id for t in rules.merchant_terms
    }
    owners += sorted({*merchant_ids, *(m for m in named if m is not None)})
    book = []
    for owner in owners:
        schedules = [s for s in rules.fee_schedules if s.merchant_id == owner]
        terms = [t for t in rules.merchant_terms if t.merchant_id == owner]
        schedule_id = _own_in_force_id(schedules, today)
        terms_id = _own_in_force_id(terms, today)
        try:
            applied = rules.schedule_for(owner, today)
        except ClearingError:
            applied = None
        in_force = None
        if applied is not None:
            own = applied.merchant_id == owner
            in_force = _entry(applied, IN_FORCE if own else "standard 标准费率")
        newest_first = sorted(schedules, key=lambda s: (s.effective_from, s.schedule_id))[::-1]
        terms_newest = sorted(terms, key=lambda t: (t.effective_from, t.terms_id))[::-1]
        last_schedules = _last_ids((s.effective_from, s.schedule_id) for s in schedules)
        last_terms = _last_ids((t.effective_from, t.terms_id) for t in terms)
        book.append(
            OwnerFees(
                merchant_id=owner,
                in_force=in_force,
                standard_applies=owner is not None and schedule_id is None and applied is not None,
                terms_in_force=rules.terms_for(owner, today),
                schedules=tuple(
                    _entry(
                        s,
                        _state(s.effective_from, s.schedule_id, schedule_id, today, last_schedules),
                    )
                    for s in newest_first
                ),
                terms=tuple(
                    TermsEntry(t, _state(t.effective_from, t.terms_id, terms_id, today, last_terms))
                    for t in terms_newest
                ),
            )
        )
    return book


def _schedule_record(schedule: FeeSchedule | None) -> dict[str, object] | None:
    """What the audit row keeps of a schedule (rates as typed, caps in yuan)."""
    if schedule is None:
        return None
    record: dict[str, object] = {
        "schedule_id": schedule.schedule_id,
        "merchant_id": schedule.merchant_id,
        "effective_from": schedule.effective_from.isoformat(),
        "instant": format_rate(schedule.instant_rate),
    }
    for card_class in CardClass:
        cap = schedule.cap_fen(card_class)
        record[card_class.value] = format_rate(schedule.rates[card_class]) + (
            "" if cap is None else f" cap {format_fen(cap)}"
        )
    return record


Act = Callable[..., dict[str, object]]


class Money:
    """Statements and fee schedules over one host store (``office.money``)."""

    def __init__(
        self,
        store: HostStore,
        *,
        clock: Callable[[], datetime],
        require: Callable[[Actor, Permission], None],
        act: Act,
    ) -> None:
        self._clearing = ClearingStore(store)
        self._clock = clock
        self._require = require
        self._act = act

    def today(self) -> date:
        """The trading day under way (clearing's cut-off schedule)."""
        return self._clearing.current_trading_day(self._clock())

    def merchants(self, scope: Scope) -> list[str]:
        """The merchants with a terminal on this host that ``scope`` may see."""
        found = self._clearing.merchants()
        if scope.merchant_id is None:
            return found
        return [m for m in found if m == scope.merchant_id]

    def statement(self, scope: Scope, merchant_id: str | None, day: date) -> Statement:
        """The statement of ``merchant_id`` (a merchant user: its own) for trading day ``day``:
        what ``posbatch clearing statement`` prints. Another merchant's is NotFound."""
        merchant = merchant_id or scope.merchant_id
        if merchant is None:
            raise ConfigError("merchant_id: choose the merchant of the statement")
        if scope.merchant_id is not None and merchant != scope.merchant_id:
            raise NotFound("no such merchant")
        if not self._clearing.has_merchant(merchant):
            raise NotFound("no such merchant on this host")
        try:
            return self._clearing.statement(merchant, day)
        except ClearingError as exc:  # no fee schedule in force, a day out of range…
            raise BackOfficeError(str(exc), shown_ids=exc.shown_ids) from exc

    def fee_book(self) -> list[OwnerFees]:
        """Every owner's fee schedules and terms: in force today, upcoming, superseded."""
        return fee_book(self._clearing.rules(), self._clearing.merchants(), self.today())

    def set_fees(self, actor: Actor, form: Mapping[str, str]) -> FeeSchedule:
        """Set a merchant's fee schedule from ``form`` (the fee page's fields, named like
        ``host set-fees``' options) from a trading day on: parsed by the same function,
        refused for a day under way's predecessors by the same store call, audited."""
        self._require(actor, Permission.SET_FEES)
        values = {name: form.get(name, "").strip()[:FEE_TEXT_CHARS_MAX] for name in FORM_NAMES}
        merchant_id = merchant_id_param(values)
        missing = [f.rate_name for f in FEE_FIELDS if not values[f.rate_name]]
        missing += [name for name in ("merchant_id", "effective_from") if not values[name]]
        if missing or merchant_id is None:
            raise ConfigError(f"setting fees needs {', '.join(missing)}")
        if not self._clearing.has_merchant(merchant_id):
            # A typo (898110054110010 for …001) was stored as a schedule of nobody, and the
            # page said "fee schedule set": the merchant it was meant for kept its old rates.
            raise ConfigError(UNKNOWN_MERCHANT)
        try:
            schedule = parse_fee_schedule(
                merchant_id,
                values["effective_from"],
                {f.card_class: values[f.rate_name] for f in FEE_FIELDS},
                {f.card_class: values[f.cap_name] or None for f in FEE_FIELDS},
                values["instant"] or INSTANT_RATE_DEFAULT,
            )
        except ClearingError as exc:
            raise ConfigError(str(exc)) from exc
        rules = self._clearing.rules()
        try:
            before = rules.schedule_for(merchant_id, schedule.effective_from)
        except ClearingError:
            before = None
        saved: list[FeeSchedule] = []

        def run() -> dict[str, object]:
            try:
                saved.append(self._clearing.set_fee_schedule(schedule, now=self._clock()))
            except ClearingError as exc:  # a day under way or cleared: the CLI's words
                raise ConfigError(str(exc)) from exc
            after = _schedule_record(saved[0])
            assert after is not None
            return after

        self._act(
            actor,
            "fees.set",
            merchant_id,
            _schedule_record(before),
            run,
            detail=f"from {schedule.effective_from.isoformat()}",
            allowed=frozenset({merchant_id}),
        )
        return saved[0]
