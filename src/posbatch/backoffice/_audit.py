"""The audit log: every state-changing action — who, what, when, from which address,
before and after — append-only (the database refuses UPDATE and DELETE on it).

An action the back office carries out in its own unit of work writes its audit row in
that same unit of work (both or neither). An action carried out by a host store function
that commits on its own (register, suspend, advance a batch) writes a ``requested`` row
first and its ``done`` / ``refused`` row after: a process that dies in between leaves the
request on record, never a silent change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posbatch.backoffice._db import aware, naive, read, write
from posbatch.backoffice._text import clean_text
from posbatch.batch.ids import MERCHANT_ID_CHARS
from posbatch.errors import ConfigError
from posbatch.host import _schema as t
from posbatch.host.store import HostStore

__all__ = ["AUDIT_PAGE_ROWS", "Actor", "AuditEntry", "AuditFilter", "AuditLog", "Outcome"]

AUDIT_PAGE_ROWS: Final = 100
DETAIL_CHARS_MAX: Final = 500
NAME_CHARS_MAX: Final = 64


class Outcome:
    DONE: Final = "done"
    REFUSED: Final = "refused"
    REQUESTED: Final = "requested"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a user of the console (or ``cli:…`` for the command line) and from where."""

    name: str
    role: str
    address: str
    merchant_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    audit_id: int
    created_at: datetime
    actor: str
    role: str
    address: str
    action: str
    target: str
    outcome: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: str


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> AuditFilter:
        """From URL parameters; ConfigError (one line) for a bad one."""

        def text(name: str) -> str | None:
            value = params.get(name, "").strip()
            if len(value) > NAME_CHARS_MAX:
                raise ConfigError(f"{name} is longer than {NAME_CHARS_MAX} characters")
            # Searched, and shown back, as record() stores it: a card number masked, a
            # merchant id (fees.set's target) whole.
            shape = len(value) == MERCHANT_ID_CHARS and value.isascii() and value.isalnum()
            allowed = frozenset({value} if shape else ())
            return clean_text(value, NAME_CHARS_MAX, allowed=allowed) or None

        since = text("since") or ""
        until = text("until") or ""
        outcome = text("outcome")
        if outcome not in (None, Outcome.DONE, Outcome.REFUSED, Outcome.REQUESTED):
            raise ConfigError("outcome must be done, refused or requested")
        return cls(
            actor=text("actor"),
            action=text("action"),
            target=text("target"),
            outcome=outcome,
            since=_time(since, "since"),
            until=_time(until, "until"),
        )

    def query(self) -> dict[str, str]:
        from posbatch.backoffice._time import beijing  # noqa: PLC0415 - no cycle

        values = {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "since": None if self.since is None else f"{beijing(self.since):%Y-%m-%d %H:%M}",
            "until": None if self.until is None else f"{beijing(self.until):%Y-%m-%d %H:%M}",
        }
        return {key: value for key, value in values.items() if value}


def _time(text: str, name: str) -> datetime | None:
    from posbatch.backoffice._time import parse_beijing  # noqa: PLC0415 - no cycle

    try:
        return parse_beijing(text) if text else None
    except ConfigError:
        raise ConfigError(f"{name}: Beijing time like 2026-12-05 23:30") from None


def _json(value: Mapping[str, Any] | None) -> str | None:
    if value is None:
        return None
    return json.dumps(dict(value), ensure_ascii=False, sort_keys=True, default=str)


def record(
    connection: Connection,
    actor: Actor,
    *,
    action: str,
    target: str,
    outcome: str,
    now: datetime,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    detail: str = "",
    allowed: frozenset[str] = frozenset(),
) -> None:
    """Append one row (inside the caller's unit of work). ``allowed``: ids the target and
    detail may show whole although they look like card numbers (a 15-digit merchant id)."""
    connection.execute(
        t.audit.insert().values(
            created_at=naive(now),
            # The actor of a refused login is whatever was typed as the name: a cashier's
            # card number typed into the wrong field must not be kept (or shown) whole.
            actor=clean_text(actor.name, NAME_CHARS_MAX),
            role=actor.role,
            address=clean_text(actor.address, NAME_CHARS_MAX),
            action=action,
            target=clean_text(target, NAME_CHARS_MAX, allowed=allowed),
            outcome=outcome,
            before=_json(before),
            after=_json(after),
            detail=clean_text(detail, DETAIL_CHARS_MAX, allowed=allowed),
        )
    )


class AuditLog:
    """Append and search the audit log of one host store."""

    def __init__(self, store: HostStore) -> None:
        self.store = store

    def append(self, actor: Actor, **values: Any) -> None:
        """One row in a unit of work of its own."""
        with write(self.store) as connection:
            record(connection, actor, **values)

    def search(
        self,
        audit_filter: AuditFilter,
        *,
        before_id: int | None = None,
        limit: int = AUDIT_PAGE_ROWS,
    ) -> list[AuditEntry]:
        """Newest first; ``before_id`` pages on (keyset)."""
        a = t.audit.c
        query = sa.select(t.audit).order_by(a.audit_id.desc()).limit(min(limit, AUDIT_PAGE_ROWS))
        if audit_filter.actor:
            query = query.where(a.actor == audit_filter.actor)
        if audit_filter.action:
            query = query.where(a.action == audit_filter.action)
        if audit_filter.target:
            query = query.where(a.target == audit_filter.target)
        if audit_filter.outcome:
            query = query.where(a.outcome == audit_filter.outcome)
        if audit_filter.since is not None:
            query = query.where(a.created_at >= naive(audit_filter.since))
        if audit_filter.until is not None:
            query = query.where(a.created_at < naive(audit_filter.until))
        if before_id is not None:
            query = query.where(a.audit_id < before_id)
        with read(self.store) as connection:
            rows = connection.execute(query).all()
        return [
            AuditEntry(
                audit_id=row.audit_id,
                created_at=aware(row.created_at),
                actor=row.actor,
                role=row.role,
                address=row.address,
                action=row.action,
                target=row.target,
                outcome=row.outcome,
                before=None if row.before is None else json.loads(row.before),
                after=None if row.after is None else json.loads(row.after),
                detail=row.detail,
            )
            for row in rows
        ]
