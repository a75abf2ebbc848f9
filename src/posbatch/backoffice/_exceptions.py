"""Exception (差错) work: a queue, assignment, resolution with a remark, history, export.

Theory of operation
-------------------
The host writes an exception row when something differs that it must not fix by itself
(DESIGN.md, "The batch lifecycle"). That row never changes. The back office's work on it
lives beside it: ``host_exception_work`` (its status now: open or resolved, assignee,
resolution, amount) and ``host_exception_history`` (every step, with who, when and the
remark). The workflow is the table :data:`STEPS`: ``assign`` and ``note`` while open,
``resolve`` once (open → resolved, final), ``note`` after. A step that the table does not
allow raises :class:`~posbatch.errors.BackOfficeError`.

What a resolution may be depends on the kind (:data:`RESOLUTIONS_BY_KIND`): a difference
that the host counted and the terminal did not can be confirmed (the host's record
stands) or refunded to the cardholder; one the terminal counted and the host did not can
be confirmed or credited to the merchant; and so on. A resolution that moves money
carries an amount in fen, bounded by the amounts the exception is about.

A resolution that moves the merchant's money (credit-merchant, debit-merchant,
refund-cardholder) is paid by clearing: an adjustment line (差错调整) of the trading
day it is resolved on (``posbatch.clearing.adjustment_lines``). A day already cleared
never changes, so a resolution dated within a cleared day (a clock gone back) is
refused, in the same unit of work that would write it.

What a merchant user sees (its own merchant's exceptions only; another's is NotFound):
the exception, its status, the resolution, its amount and when — never the staff's
internal work: remarks, assignees, who resolved it. :class:`ExceptionWork`'s reads leave
those out for a merchant scope (:func:`for_merchant`, :func:`merchant_history`), so no
page or export can show them; a merchant's search by assignee is ignored.

Several at once: all of them take the step, or none does (the error names the first
that cannot). Every step is written with its audit row in one unit of work; on
PostgreSQL the exception rows are locked first, on SQLite the unit of work holds the
write lock (BEGIN IMMEDIATE) — two operators resolving the same exception: one wins,
the other is told it is resolved already.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posbatch.backoffice._audit import Actor, Outcome, record
from posbatch.backoffice._db import aware, naive, read, write
from posbatch.backoffice._filters import (
    PARAM_CHARS_MAX,
    Scope,
    choice_param,
    merchant_id_param,
    terminal_id_param,
)
from posbatch.backoffice._staff import Permission, Role, may
from posbatch.backoffice._text import clean_text
from posbatch.batch.limits import AMOUNT_FEN_MAX  # what field 4 can carry
from posbatch.batch.money import format_fen
from posbatch.clearing import ADJUSTMENT_SIGNS, trading_day
from posbatch.errors import BackOfficeError, ConfigError, Forbidden, NotFound
from posbatch.host import ClearingStore
from posbatch.host import _schema as t
from posbatch.host.store import ExceptionKind, HostStore

__all__ = [
    "BULK_MAX",
    "EXCEPTION_PAGE_ROWS",
    "REMARK_CHARS_MAX",
    "RESOLUTIONS_BY_KIND",
    "STEPS",
    "ExceptionFilter",
    "ExceptionItem",
    "ExceptionWork",
    "HistoryStep",
    "Resolution",
]

EXCEPTION_PAGE_ROWS: Final = 100
BULK_MAX: Final = 200  # exceptions one request may resolve or assign at once
REMARK_CHARS_MAX: Final = 500


class Status:
    OPEN: Final = "open"
    RESOLVED: Final = "resolved"


class Step:
    ASSIGN: Final = "assign"
    NOTE: Final = "note"
    RESOLVE: Final = "resolve"


# (status, step) → status after it. Anything else is refused.
STEPS: Final[dict[tuple[str, str], str]] = {
    (Status.OPEN, Step.ASSIGN): Status.OPEN,
    (Status.OPEN, Step.NOTE): Status.OPEN,
    (Status.OPEN, Step.RESOLVE): Status.RESOLVED,
    (Status.RESOLVED, Step.NOTE): Status.RESOLVED,
}


class Resolution(enum.StrEnum):
    """How an exception is settled. ``moves_money``: it carries an amount in fen."""

    CONFIRM_HOST = "confirm-host"  # 以主机为准: the host's record stands, no money moves
    CREDIT_MERCHANT = "credit-merchant"  # 补付商户: pay the merchant what the host missed
    DEBIT_MERCHANT = "debit-merchant"  # 扣回商户: take back what the merchant got too much
    REFUND_CARDHOLDER = "refund-cardholder"  # 退款给持卡人 (taken back from the merchant)
    WRITE_OFF = "write-off"  # 核销: the acquirer bears the amount

    @property
    def moves_money(self) -> bool:
        return self is not Resolution.CONFIRM_HOST


RESOLUTION_TEXT: Final[dict[Resolution, tuple[str, str]]] = {
    Resolution.CONFIRM_HOST: ("confirm: the host's record stands", "确认：以主机记录为准"),
    Resolution.CREDIT_MERCHANT: ("credit the merchant", "补付商户"),
    Resolution.DEBIT_MERCHANT: ("debit the merchant", "扣回商户"),
    Resolution.REFUND_CARDHOLDER: ("refund the cardholder", "退款给持卡人"),
    Resolution.WRITE_OFF: ("write off (acquirer bears it)", "核销（收单机构承担）"),
}

_C, _CR, _DB, _RF, _WO = (
    Resolution.CONFIRM_HOST,
    Resolution.CREDIT_MERCHANT,
    Resolution.DEBIT_MERCHANT,
    Resolution.REFUND_CARDHOLDER,
    Resolution.WRITE_OFF,
)
RESOLUTIONS_BY_KIND: Final[dict[str, tuple[Resolution, ...]]] = {
    # uploaded as approved by the terminal, not counted by the host
    ExceptionKind.TERMINAL_ONLY: (_C, _CR, _WO),
    # counted by the host, not uploaded by the terminal
    ExceptionKind.HOST_ONLY: (_C, _RF, _WO),
    ExceptionKind.AMOUNT_DIFFERS: (_C, _CR, _DB, _RF),
    ExceptionKind.PAN_DIFFERS: (_C, _RF, _WO),
    ExceptionKind.UPLOAD_COUNT_DIFFERS: (_C,),  # a count, no money of its own
    # a reversal or void that came after its batch closed: the sale stands on the host
    ExceptionKind.LATE_REVERSAL: (_RF, _C),
    ExceptionKind.LATE_VOID: (_RF, _C),
    ExceptionKind.REVERSAL_MISMATCH: (_C, _CR, _DB, _RF),
    ExceptionKind.BATCH_ADVANCED: (_C, _CR, _DB),
    ExceptionKind.SETTLED_AFTER_ADVANCE: (_C, _CR, _DB, _WO),
}
# A kind added by the host after this table: every resolution, decided by a person.
RESOLUTIONS_OTHER: Final = tuple(Resolution)


def resolutions_for(kind: str) -> tuple[Resolution, ...]:
    return RESOLUTIONS_BY_KIND.get(kind, RESOLUTIONS_OTHER)


@dataclass(frozen=True, slots=True)
class ExceptionItem:
    exception_id: int
    terminal_id: str
    merchant_id: str
    batch_id: int | None
    batch_no: int | None
    stan: int | None
    kind: str
    cause: str
    terminal_amount_fen: int | None
    host_amount_fen: int | None
    created_at: datetime
    status: str
    assignee: str | None
    resolution: str | None
    amount_fen: int | None
    resolved_by: str | None
    resolved_at: datetime | None

    @property
    def amount_bound_fen(self) -> int | None:
        """The most a resolution of this exception may move (None: no amount known)."""
        known = [abs(a) for a in (self.terminal_amount_fen, self.host_amount_fen) if a is not None]
        return max(known) if known else None

    @property
    def natural_amount_fen(self) -> int | None:
        """The amount the exception is about: the difference when both sides have one."""
        if self.terminal_amount_fen is not None and self.host_amount_fen is not None:
            difference = abs(self.terminal_amount_fen - self.host_amount_fen)
            return difference or abs(self.host_amount_fen) or None
        return self.amount_bound_fen or None

    @property
    def at_stake_fen(self) -> int:
        """The money at stake, what "largest first" sorts by (``_AT_STAKE`` in SQL): the
        amount the exception is about (:attr:`natural_amount_fen`), 0 when none is known."""
        return self.natural_amount_fen or 0

    @property
    def resolutions(self) -> tuple[Resolution, ...]:
        return resolutions_for(self.kind)


@dataclass(frozen=True, slots=True)
class HistoryStep:
    history_id: int
    step: str
    actor: str
    assignee: str | None
    resolution: str | None
    amount_fen: int | None
    remark: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ExceptionFilter:
    status: str | None = Status.OPEN  # None: all
    kind: str | None = None
    terminal_id: str | None = None
    merchant_id: str | None = None
    assignee: str | None = None
    cause: str | None = None  # words the cause contains
    sort: str = "age"  # age (oldest first) or amount (largest first)

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> ExceptionFilter:
        status = choice_param(params, "status", (Status.OPEN, Status.RESOLVED, "all"))
        kind = params.get("kind", "").strip()
        if len(kind) > 24 or (kind and not kind.replace("-", "").isalpha()):
            raise ConfigError("kind: an exception kind like host-only")
        assignee = params.get("assignee", "").strip()
        if len(assignee) > PARAM_CHARS_MAX:
            raise ConfigError("assignee: a user name")
        cause = params.get("cause", "").strip()
        if len(cause) > PARAM_CHARS_MAX or not cause.isprintable():
            raise ConfigError(f"cause: at most {PARAM_CHARS_MAX} printable characters")
        return cls(
            status=None if status == "all" else (status or Status.OPEN),
            kind=kind or None,
            terminal_id=terminal_id_param(params),
            merchant_id=merchant_id_param(params),
            # Kept (and shown back in the form and the export link) as the stored text is:
            # a card number typed in is searched, and shown, masked.
            assignee=clean_text(assignee, PARAM_CHARS_MAX) or None,
            cause=clean_text(cause, PARAM_CHARS_MAX) or None,
            sort=choice_param(params, "sort", ("age", "amount")) or "age",
        )

    def query(self) -> dict[str, str]:
        out = {
            "status": self.status or "all",
            "kind": self.kind,
            "terminal_id": self.terminal_id,
            "merchant_id": self.merchant_id,
            "assignee": self.assignee,
            "cause": self.cause,
            "sort": self.sort if self.sort != "age" else None,
        }
        return {key: value for key, value in out.items() if value}


e = t.exceptions.c
w = t.exception_work.c
h = t.exception_history.c
# The money at stake, as ExceptionItem.at_stake_fen says it: the difference when both sides
# have an amount and they differ; else the one amount there is (the host's when both agree);
# 0 when neither side has one. (It was the host's amount whenever the host had one: an
# amount-differs of 5,000.00 against the host's 1.00 sorted as 1.00.)
_AT_STAKE = sa.case(
    (
        sa.and_(
            e.terminal_amount_fen.is_not(None),
            e.host_amount_fen.is_not(None),
            e.terminal_amount_fen != e.host_amount_fen,
        ),
        sa.func.abs(e.terminal_amount_fen - e.host_amount_fen),
    ),
    else_=sa.func.abs(sa.func.coalesce(e.host_amount_fen, e.terminal_amount_fen, 0)),
)


def _item(row: Any) -> ExceptionItem:
    return ExceptionItem(
        exception_id=row.exception_id,
        terminal_id=row.terminal_id,
        merchant_id=row.merchant_id,
        batch_id=row.batch_id,
        batch_no=row.batch_no,
        stan=row.stan,
        kind=row.kind,
        cause=row.cause,
        terminal_amount_fen=row.terminal_amount_fen,
        host_amount_fen=row.host_amount_fen,
        created_at=aware(row.created_at),
        status=row.status or Status.OPEN,
        assignee=row.assignee,
        resolution=row.resolution,
        amount_fen=row.amount_fen,
        resolved_by=row.resolved_by,
        resolved_at=None if row.resolved_at is None else aware(row.resolved_at),
    )


# Who a merchant is told acted on its exception (never a staff member's name).
ACQUIRER: Final = "收单机构 acquirer"


def for_merchant(item: ExceptionItem) -> ExceptionItem:
    """The exception as its merchant sees it: no assignee, no name of who resolved it."""
    return dataclasses.replace(item, assignee=None, resolved_by=None)


def merchant_history(steps: Sequence[HistoryStep]) -> list[HistoryStep]:
    """The history as the merchant sees it: the resolution only (when, how, how much),
    by the acquirer — no remarks, no assignments, no notes, no staff names."""
    return [
        dataclasses.replace(step, actor=ACQUIRER, assignee=None, remark="")
        for step in steps
        if step.step == Step.RESOLVE
    ]


def _select() -> sa.Select[Any]:
    return sa.select(
        t.exceptions,
        w.status,
        w.assignee,
        w.resolution,
        w.amount_fen,
        w.resolved_by,
        w.resolved_at,
    ).select_from(t.exceptions.outerjoin(t.exception_work, w.exception_id == e.exception_id))


def _refuse_cleared(connection: Connection, day: date) -> None:
    """A resolution that moves the merchant's money is an adjustment of its trading day
    ``day``: refused when that day is cleared already (what was paid never changes)."""
    cleared = connection.execute(
        sa.select(t.cleared_days.c.trading_day).where(t.cleared_days.c.trading_day == day)
    ).first()
    if cleared is not None:
        raise BackOfficeError(
            f"trading day {day} is cleared already: a resolution that moves the merchant's "
            "money cannot be dated within it (check the clock)"
        )


def parse_ids(values: Sequence[str]) -> list[int]:
    """Exception ids from a form (checkboxes): digits only, at most BULK_MAX."""
    if len(values) > BULK_MAX:
        raise ConfigError(f"at most {BULK_MAX} exceptions at once")
    ids = []
    for value in values:
        if not (value.isascii() and value.isdigit()) or len(value) > 12:
            raise ConfigError("exception ids are numbers")
        ids.append(int(value))
    if not ids:
        raise ConfigError("choose at least one exception")
    return list(dict.fromkeys(ids))


class ExceptionWork:
    """The exception queue and the work on it, over one host store."""

    def __init__(self, store: HostStore) -> None:
        self.store = store

    # --- reads -------------------------------------------------------------------------

    def queue(
        self,
        scope: Scope,
        queue_filter: ExceptionFilter,
        *,
        after: tuple[int, int] | None = None,
        limit: int = EXCEPTION_PAGE_ROWS,
    ) -> tuple[list[ExceptionItem], tuple[int, int] | None]:
        """One page and where the next starts: (amount, id) by amount, (0, id) by age."""
        limit = max(1, min(limit, EXCEPTION_PAGE_ROWS))
        query = self._filtered(scope, queue_filter)
        if queue_filter.sort == "amount":
            query = query.order_by(_AT_STAKE.desc(), e.exception_id)
            if after is not None:
                query = query.where(
                    sa.or_(
                        _AT_STAKE < after[0],
                        sa.and_(_AT_STAKE == after[0], e.exception_id > after[1]),
                    )
                )
        else:
            query = query.order_by(e.exception_id)
            if after is not None:
                query = query.where(e.exception_id > after[1])
        with read(self.store) as connection:
            items = [self._seen(scope, row) for row in connection.execute(query.limit(limit + 1))]
        more = len(items) > limit
        items = items[:limit]
        if not more or not items:
            return items, None
        last = items[-1]
        key = last.at_stake_fen if queue_filter.sort == "amount" else 0
        return items, (key, last.exception_id)

    def export(self, scope: Scope, queue_filter: ExceptionFilter) -> Iterator[ExceptionItem]:
        """Every exception of the filter, oldest first, in bounded chunks."""
        last_id = 0
        while True:
            query = (
                self._filtered(scope, queue_filter)
                .where(e.exception_id > last_id)
                .order_by(e.exception_id)
                .limit(EXCEPTION_PAGE_ROWS)
            )
            with read(self.store) as connection:
                items = [self._seen(scope, row) for row in connection.execute(query).all()]
            yield from items
            if len(items) < EXCEPTION_PAGE_ROWS:
                return
            last_id = items[-1].exception_id

    def _filtered(self, scope: Scope, queue_filter: ExceptionFilter) -> sa.Select[Any]:
        query = _select()
        if scope.merchant_id is not None:
            query = query.where(e.merchant_id == scope.merchant_id)
        if queue_filter.status == Status.OPEN:
            query = query.where(sa.or_(w.status.is_(None), w.status == Status.OPEN))
        elif queue_filter.status == Status.RESOLVED:
            query = query.where(w.status == Status.RESOLVED)
        if queue_filter.kind is not None:
            query = query.where(e.kind == queue_filter.kind)
        if queue_filter.terminal_id is not None:
            query = query.where(e.terminal_id == queue_filter.terminal_id)
        if queue_filter.merchant_id is not None:
            query = query.where(e.merchant_id == queue_filter.merchant_id)
        if queue_filter.assignee is not None and scope.merchant_id is None:
            query = query.where(w.assignee == queue_filter.assignee)
        if queue_filter.cause is not None:
            query = query.where(e.cause.contains(queue_filter.cause, autoescape=True))
        return query

    def item(self, scope: Scope, exception_id: int) -> ExceptionItem:
        query = _select().where(e.exception_id == exception_id)
        if scope.merchant_id is not None:
            query = query.where(e.merchant_id == scope.merchant_id)
        with read(self.store) as connection:
            row = connection.execute(query).first()
        if row is None:
            raise NotFound(f"no exception #{exception_id}")
        return self._seen(scope, row)

    @staticmethod
    def _seen(scope: Scope, row: Any) -> ExceptionItem:
        item = _item(row)
        return item if scope.merchant_id is None else for_merchant(item)

    def history(self, scope: Scope, exception_id: int) -> list[HistoryStep]:
        self.item(scope, exception_id)  # NotFound outside the scope
        with read(self.store) as connection:
            rows = connection.execute(
                sa.select(t.exception_history)
                .where(h.exception_id == exception_id)
                .order_by(h.history_id)
            ).all()
        steps = [
            HistoryStep(
                r.history_id, r.step, r.actor, r.assignee, r.resolution, r.amount_fen,
                r.remark, aware(r.created_at),
            )
            for r in rows
        ]  # fmt: skip
        return steps if scope.merchant_id is None else merchant_history(steps)

    def assignees(self) -> list[str]:
        """Who work can be assigned to: the active ops and support users."""
        with read(self.store) as connection:
            return list(
                connection.execute(
                    sa.select(t.users.c.name)
                    .where(
                        t.users.c.active.is_(True),
                        t.users.c.role.in_((Role.OPS.value, Role.SUPPORT.value)),
                    )
                    .order_by(t.users.c.name)
                ).scalars()
            )

    # --- steps -------------------------------------------------------------------------

    def assign(
        self, actor: Actor, ids: Sequence[int], assignee: str, remark: str, *, now: datetime
    ) -> None:
        if assignee not in self.assignees():
            raise ConfigError("assign to an active ops or support user")
        self._steps(actor, ids, Step.ASSIGN, now=now, remark=remark, assignee=assignee)

    def note(self, actor: Actor, exception_id: int, remark: str, *, now: datetime) -> None:
        self._steps(actor, [exception_id], Step.NOTE, now=now, remark=remark)

    def resolve(
        self,
        actor: Actor,
        ids: Sequence[int],
        resolution: str,
        remark: str,
        *,
        amount_fen: int | None = None,
        now: datetime,
    ) -> None:
        """Resolve every one of ``ids`` the same way — all or none.

        A resolution that moves money needs an amount: ``amount_fen`` when resolving one,
        else each exception's own (the difference it records); never above what the
        exception is about.
        """
        try:
            chosen = Resolution(resolution)
        except ValueError:
            raise ConfigError(
                "resolution: one of " + ", ".join(r.value for r in Resolution)
            ) from None
        if amount_fen is not None and len(ids) != 1:
            raise ConfigError("an amount can be given when resolving one exception only")
        self._steps(
            actor, ids, Step.RESOLVE, now=now, remark=remark, resolution=chosen,
            amount_fen=amount_fen,
        )  # fmt: skip

    def _steps(
        self,
        actor: Actor,
        ids: Sequence[int],
        step: str,
        *,
        now: datetime,
        remark: str,
        assignee: str | None = None,
        resolution: Resolution | None = None,
        amount_fen: int | None = None,
    ) -> None:
        if not may(actor.role, Permission.RESOLVE_EXCEPTIONS):
            raise Forbidden("your role may not work on exceptions")
        if not ids or len(ids) > BULK_MAX:
            raise ConfigError(f"choose 1..{BULK_MAX} exceptions")
        text = clean_text(remark, REMARK_CHARS_MAX)
        if not text:
            raise ConfigError("a remark is required: say what was done and why")
        scope = Scope(actor.merchant_id)
        pays_on = None
        if resolution is not None and ADJUSTMENT_SIGNS[resolution.value]:
            pays_on = trading_day(now, ClearingStore(self.store).cutoffs())
        with write(self.store) as connection:
            if pays_on is not None:
                _refuse_cleared(connection, pays_on)
            items = self._locked(connection, scope, ids)
            for item in items:
                after = STEPS.get((item.status, step))
                if after is None:
                    raise BackOfficeError(
                        f"exception #{item.exception_id} is {item.status}"
                        + (
                            f" ({item.resolution} by {item.resolved_by})"
                            if item.resolved_by
                            else ""
                        )
                        + f": it cannot take '{step}'"
                    )
                amount = None
                if resolution is not None:
                    amount = self._amount(item, resolution, amount_fen)
                self._write_step(
                    connection, actor, item, step, status=after, remark=text, now=now,
                    assignee=assignee, resolution=resolution, amount_fen=amount,
                )  # fmt: skip

    def _amount(
        self, item: ExceptionItem, resolution: Resolution, amount_fen: int | None
    ) -> int | None:
        if resolution not in item.resolutions:
            allowed = ", ".join(r.value for r in item.resolutions)
            raise BackOfficeError(
                f"exception #{item.exception_id} ({item.kind}) cannot be resolved "
                f"'{resolution.value}': use {allowed}"
            )
        if not resolution.moves_money:
            if amount_fen is not None:
                raise ConfigError(f"'{resolution.value}' moves no money: leave the amount empty")
            return None
        amount = amount_fen if amount_fen is not None else item.natural_amount_fen
        if amount is None:
            raise ConfigError(
                f"exception #{item.exception_id}: give the amount that '{resolution.value}' moves"
            )
        bound = item.amount_bound_fen
        if not 0 < amount <= (bound if bound is not None else AMOUNT_FEN_MAX):
            limit = format_fen(bound if bound is not None else AMOUNT_FEN_MAX)
            raise ConfigError(
                f"exception #{item.exception_id}: the amount must be more than 0.00 "
                f"and at most {limit}"
            )
        return amount

    def _locked(
        self, connection: Connection, scope: Scope, ids: Sequence[int]
    ) -> list[ExceptionItem]:
        """The exceptions, locked for this unit of work; NotFound for any outside the scope."""
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.select(e.exception_id)
                .where(e.exception_id.in_(ids))
                .order_by(e.exception_id)
                .with_for_update()
            )
        query = _select().where(e.exception_id.in_(ids)).order_by(e.exception_id)
        if scope.merchant_id is not None:
            query = query.where(e.merchant_id == scope.merchant_id)
        items = [_item(row) for row in connection.execute(query).all()]
        missing = sorted(set(ids) - {item.exception_id for item in items})
        if missing:
            raise NotFound(f"no exception #{missing[0]}")
        return items

    def _write_step(
        self,
        connection: Connection,
        actor: Actor,
        item: ExceptionItem,
        step: str,
        *,
        status: str,
        remark: str,
        now: datetime,
        assignee: str | None,
        resolution: Resolution | None,
        amount_fen: int | None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "updated_at": naive(now)}
        if step == Step.ASSIGN:
            values["assignee"] = assignee
        if step == Step.RESOLVE:
            assert resolution is not None
            values.update(
                resolution=resolution.value,
                amount_fen=amount_fen,
                resolved_by=actor.name,
                resolved_at=naive(now),
            )
        exists = connection.execute(
            sa.select(w.exception_id).where(w.exception_id == item.exception_id)
        ).first()
        if exists is None:
            connection.execute(t.exception_work.insert().values(exception_id=item.exception_id,
                                                                **values))  # fmt: skip
        else:
            connection.execute(
                t.exception_work.update()
                .where(w.exception_id == item.exception_id)
                .values(**values)
            )
        connection.execute(
            t.exception_history.insert().values(
                exception_id=item.exception_id,
                step=step,
                actor=actor.name,
                assignee=assignee,
                resolution=None if resolution is None else resolution.value,
                amount_fen=amount_fen,
                remark=remark,
                created_at=naive(now),
            )
        )
        before = {"status": item.status, "assignee": item.assignee}
        after: dict[str, Any] = {
            "status": status,
            "assignee": values.get("assignee", item.assignee),
        }
        if resolution is not None:
            after.update(resolution=resolution.value, amount_fen=amount_fen)
        record(
            connection,
            actor,
            action=f"exception.{step}",
            target=f"exception #{item.exception_id}",
            outcome=Outcome.DONE,
            now=now,
            before=before,
            after=after,
            detail=remark,
        )
