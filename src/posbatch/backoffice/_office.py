"""The back office over one host store: what the console's pages call.

Terminal actions go through the very functions the ``posbatch host`` CLI calls
(:meth:`HostStore.add_terminal`, :meth:`HostStore.set_status`,
:meth:`HostStore.advance_batch`), each between a ``requested`` and a ``done`` /
``refused`` audit row (see :mod:`posbatch.backoffice._audit`).
"""

from __future__ import annotations

import time as time_module
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Final

import argon2

from posbatch.backoffice._audit import Actor, AuditLog, Outcome
from posbatch.backoffice._db import reading
from posbatch.backoffice._exceptions import ExceptionWork
from posbatch.backoffice._filters import Scope
from posbatch.backoffice._money import Money
from posbatch.backoffice._queries import Queries
from posbatch.backoffice._staff import Permission, Staff, may
from posbatch.backoffice._text import clean_text
from posbatch.backoffice._time import Cutoff, beijing
from posbatch.batch.codes import lookup
from posbatch.clearing import CutoffSchedule
from posbatch.errors import ConfigError, Forbidden, NotFound, PosbatchError
from posbatch.host import ClearingStore
from posbatch.host.store import HostStore
from posbatch.wire import check_value, parse_tmk

__all__ = ["REASON_CHARS_MAX", "BackOffice", "SupportView", "Ticket"]

# The acquirer's cut-off schedule is read again after this long (a change by `host
# set-cutoff` shows in a running console within it).
CUTOFF_REREAD_S: Final = 30.0
REASON_CHARS_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class Ticket:
    """What the merchant's support ticket says: never a card number or a key."""

    reference: str
    merchant_id: str
    terminal_id: str
    error_code: str | None
    error_en: str
    error_zh: str
    error_at: datetime | None
    cause_en: str
    cause_zh: str
    steps: list[tuple[str, str]]  # (en, zh) the merchant is told
    generated_at: datetime


@dataclass(frozen=True, slots=True)
class SupportView:
    report: object  # posbatch.doctor.Report (doctor imported lazily)
    ticket: Ticket


class BackOffice:
    """Reads, exception work, users, audit and terminal actions over one host store."""

    def __init__(
        self,
        store: HostStore,
        *,
        cutoff: time | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        hasher: argon2.PasswordHasher | None = None,
    ) -> None:
        self.store = store
        self._fixed_cutoff = cutoff
        self._clearing = ClearingStore(store)
        self._schedule: tuple[float, CutoffSchedule] | None = None
        self.clock = clock
        self.queries = Queries(store, cutoff=lambda: self.cutoff)
        self.exceptions = ExceptionWork(store)
        self.staff = Staff(store, hasher=hasher)
        self.audit = AuditLog(store)
        self.money = Money(store, clock=clock, require=self._require, act=self._act)

    @property
    def cutoff(self) -> Cutoff:
        """What ends a trading day here: the ``cutoff`` given, else the acquirer's schedule
        (``posbatch host set-cutoff``, what clearing's statements use), read again at most
        every ``CUTOFF_REREAD_S`` seconds."""
        if self._fixed_cutoff is not None:
            return self._fixed_cutoff
        moment = time_module.monotonic()
        if self._schedule is None or moment - self._schedule[0] > CUTOFF_REREAD_S:
            self._schedule = (moment, self._clearing.cutoffs())
        return self._schedule[1]

    def reading(self) -> AbstractContextManager[None]:
        """A block whose reads share one connection (the console opens one per request)."""
        return reading(self.store)

    # --- terminal actions ---------------------------------------------------------------

    def _require(self, actor: Actor, permission: Permission) -> None:
        if not may(actor.role, permission):
            raise Forbidden(f"your role may not {permission.value.replace('-', ' ')}")

    def _act(
        self,
        actor: Actor,
        action: str,
        target: str,
        before: dict[str, object] | None,
        run: Callable[[], dict[str, object]],
        *,
        detail: str = "",
        allowed: frozenset[str] = frozenset(),
    ) -> dict[str, object]:
        """Audit ``requested``, run the store function, audit ``done`` or ``refused``
        (``allowed``: ids the rows may show whole, see :func:`record`)."""
        self.audit.append(
            actor, action=action, target=target, outcome=Outcome.REQUESTED, now=self.clock(),
            before=before, detail=detail, allowed=allowed,
        )  # fmt: skip
        try:
            after = run()
        except PosbatchError as exc:
            self.audit.append(
                actor, action=action, target=target, outcome=Outcome.REFUSED, now=self.clock(),
                before=before, detail=f"{detail} — {exc}" if detail else str(exc),
                allowed=allowed,
            )  # fmt: skip
            raise
        self.audit.append(
            actor, action=action, target=target, outcome=Outcome.DONE, now=self.clock(),
            before=before, after=after, detail=detail, allowed=allowed,
        )  # fmt: skip
        return after

    def register_terminal(
        self,
        actor: Actor,
        merchant_id: str,
        terminal_id: str,
        master_key_hex: str,
        *,
        expected_kcv: str = "",
    ) -> str:
        """Register a terminal with its TMK (32 hex digits); return the key's check value.

        With ``expected_kcv`` (from the key custodian's sheet) a key whose check value
        differs is refused before anything is stored: a typo in a masked field shows.
        """
        self._require(actor, Permission.MANAGE_TERMINALS)
        key = parse_tmk(master_key_hex)
        kcv = check_value(key).hex().upper()
        expected = expected_kcv.strip().upper()
        if expected and (len(expected) > 8 or expected != kcv[: len(expected)]):
            raise ConfigError(
                "the master key's check value differs from the one given: the key was "
                "mistyped, nothing was stored"
            )

        def run() -> dict[str, object]:
            self.store.add_terminal(merchant_id, terminal_id, key, now=self.clock())
            return {"terminal_id": terminal_id, "merchant_id": merchant_id, "kcv": kcv}

        self._act(actor, "terminal.register", terminal_id, None, run)
        return kcv

    def set_suspended(self, actor: Actor, terminal_id: str, *, suspended: bool) -> None:
        """Suspend a terminal (its requests get 58) or resume it."""
        self._require(actor, Permission.MANAGE_TERMINALS)
        info = self.store.terminal(terminal_id)
        if info is None:
            raise NotFound(f"no terminal {terminal_id}")
        status = "suspended" if suspended else "active"

        def run() -> dict[str, object]:
            self.store.set_status(terminal_id, suspended=suspended)
            return {"status": status}

        self._act(
            actor,
            "terminal.suspend" if suspended else "terminal.resume",
            terminal_id,
            {"status": info.status},
            run,
        )

    def advance_batch(self, actor: Actor, terminal_id: str, reason: str) -> int:
        """Close the terminal's batch now and open the next (see HostStore.advance_batch)."""
        self._require(actor, Permission.MANAGE_TERMINALS)
        text = clean_text(reason, REASON_CHARS_MAX)
        if not text:
            raise ConfigError("say why the batch is advanced (the reason goes on record)")
        info = self.store.terminal(terminal_id)
        if info is None:
            raise NotFound(f"no terminal {terminal_id}")
        before: dict[str, object] = {
            "batch_no": info.batch_no,
            "state": None if info.batch_state is None else info.batch_state.value,
        }

        def run() -> dict[str, object]:
            batch_no = self.store.advance_batch(terminal_id, text, now=self.clock())
            return {"batch_no": batch_no, "state": "OPEN"}

        after = self._act(actor, "batch.advance", terminal_id, before, run, detail=text)
        batch_no = after["batch_no"]
        assert isinstance(batch_no, int)
        return batch_no

    # --- support desk -------------------------------------------------------------------

    def support(self, scope: Scope, terminal_id: str) -> SupportView:
        """The host-side diagnosis of a terminal (what ``host doctor`` finds) and the ticket."""
        from posbatch.doctor import Outcome as DoctorOutcome  # noqa: PLC0415 - doctor is big
        from posbatch.doctor import diagnose_from_host, masked, rule_for  # noqa: PLC0415

        row = self.queries.terminal(scope, terminal_id)  # NotFound outside the scope
        now = self.clock()
        # The page shows the report: every text in it through the card-number net first (a
        # cause in the host's records may quote what someone typed at the host's CLI).
        report = masked(diagnose_from_host(self.store, terminal_id, now=now))
        diagnosis = report.diagnosis
        code, error_at = self._last_error(terminal_id)
        if code is None:
            error_en, error_zh = "no error recorded by the host", "主机未记录错误"
        else:
            meaning = lookup(code)
            error_en, error_zh = f"{code} {meaning.meaning_en}", f"{code} {meaning.meaning_zh}"
        if diagnosis.outcome == DoctorOutcome.FOUND and diagnosis.cause is not None:
            rule = rule_for(diagnosis.cause)
            cause_en, cause_zh = rule.title_en, rule.title_zh
        elif diagnosis.outcome == DoctorOutcome.HEALTHY:
            cause_en, cause_zh = "no failure found on the host side", "主机侧未发现故障"
        else:
            cause_en = "not decided from the host's records alone; the terminal's journal is needed"
            cause_zh = "仅凭主机记录无法确定，需要终端流水"
        steps = [(line.en, line.zh) for line in diagnosis.person_steps]
        if code is not None:
            meaning = lookup(code)
            steps.insert(0, (meaning.step_en, meaning.step_zh))
        local = beijing(now)
        ticket = Ticket(
            reference=f"T-{local:%Y%m%d-%H%M%S}-{terminal_id}",
            merchant_id=row.merchant_id,
            terminal_id=terminal_id,
            error_code=code,
            error_en=error_en,
            error_zh=error_zh,
            error_at=error_at,
            cause_en=cause_en,
            cause_zh=cause_zh,
            steps=[(clean_text(en, 400), clean_text(zh, 400)) for en, zh in steps],
            generated_at=now,
        )
        return SupportView(report, ticket)

    def _last_error(self, terminal_id: str) -> tuple[str | None, datetime | None]:
        """The last non-00 answer the host recorded for the terminal: a 77 or a decline."""
        import sqlalchemy as sa  # noqa: PLC0415

        from posbatch.backoffice._db import aware, read  # noqa: PLC0415
        from posbatch.host import _schema as t  # noqa: PLC0415

        with read(self.store) as connection:
            declined = connection.execute(
                sa.select(t.transactions.c.response_code, t.transactions.c.created_at)
                .where(
                    t.transactions.c.terminal_id == terminal_id,
                    t.transactions.c.response_code != "00",
                )
                .order_by(t.transactions.c.created_at.desc())
                .limit(1)
            ).first()
            batch_error = connection.execute(
                sa.select(sa.func.max(t.batch_errors.c.created_at)).where(
                    t.batch_errors.c.terminal_id == terminal_id
                )
            ).scalar()
        found: list[tuple[datetime, str]] = []
        if declined is not None:
            found.append((aware(declined[1]), declined[0]))
        if batch_error is not None:
            found.append((aware(batch_error), "77"))
        if not found:
            return None, None
        moment, code = max(found)
        return code, moment
