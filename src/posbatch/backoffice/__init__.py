"""The back office's library: what the web console (posbatch.web) calls — no SQL there.

Public API::

    office = BackOffice(store, cutoff=time(23, 0))     # over a HostStore
    office.queries.overview(scope, day, now=now)       # the trading day at a glance
    office.queries.search(scope, TransactionFilter.parse(params), after=cursor)
    office.queries.batch(scope, batch_id)              # totals, difference, uploads…
    office.exceptions.resolve(actor, [12, 13], "confirm-host", "remark", now=now)
    office.staff.login(name, password, address=..., now=now)
    office.register_terminal(actor, merchant_id, terminal_id, tmk_hex)  # → KCV
    office.audit.search(AuditFilter(...))
    office.money.statement(scope, merchant_id, day)    # 对账单, as `clearing statement`
    office.money.set_fees(actor, form)                 # as `host set-fees`, audited

Scopes: ``Scope(None)`` sees every merchant; ``Scope(merchant_id)`` one merchant's data
only. Times: UTC in the store, Beijing time on pages, trading days end at the cut-off
(:mod:`posbatch.backoffice._time`).
"""

from posbatch.backoffice._audit import AUDIT_PAGE_ROWS, Actor, AuditEntry, AuditFilter, AuditLog
from posbatch.backoffice._exceptions import (
    BULK_MAX,
    RESOLUTION_TEXT,
    RESOLUTIONS_BY_KIND,
    ExceptionFilter,
    ExceptionItem,
    ExceptionWork,
    HistoryStep,
    Resolution,
    parse_ids,
)
from posbatch.backoffice._filters import Cursor, Scope, TransactionFilter
from posbatch.backoffice._money import (
    ADJUSTMENT_LABELS,
    FEE_FIELDS,
    STATEMENT_PAGE_LINES,
    FeeField,
    Money,
    OwnerFees,
    ScheduleEntry,
    StatementPage,
    TermsEntry,
    cleared_note,
    exception_settlement,
    fee_book,
    render_statement,
    schedule_rates,
    statement_csv,
    statement_page,
    statement_page_param,
)
from posbatch.backoffice._office import BackOffice, SupportView, Ticket
from posbatch.backoffice._queries import (
    EXPORT_ROWS_MAX,
    BatchDetail,
    BatchRow,
    Overview,
    Queries,
    TerminalRow,
    TransactionRow,
    search_statement,
)
from posbatch.backoffice._staff import (
    ACCOUNT_FAILURES_MAX,
    ADDRESS_FAILURES_MAX,
    LOCKOUT_MINUTES,
    LOGIN_FAILURES_MAX,
    ROLE_PERMISSIONS,
    LockedAddress,
    Permission,
    Role,
    Session,
    Staff,
    User,
    may,
)
from posbatch.backoffice._text import clean_text, mask_card_numbers
from posbatch.backoffice._time import (
    BEIJING,
    CUTOFF_DEFAULT,
    Cutoff,
    beijing,
    check_day,
    cutoff_on,
    parse_beijing,
    parse_cutoff,
    trading_day,
    trading_day_bounds,
)

__all__ = [
    "ACCOUNT_FAILURES_MAX",
    "ADDRESS_FAILURES_MAX",
    "ADJUSTMENT_LABELS",
    "AUDIT_PAGE_ROWS",
    "BEIJING",
    "BULK_MAX",
    "CUTOFF_DEFAULT",
    "EXPORT_ROWS_MAX",
    "FEE_FIELDS",
    "LOCKOUT_MINUTES",
    "LOGIN_FAILURES_MAX",
    "RESOLUTIONS_BY_KIND",
    "RESOLUTION_TEXT",
    "ROLE_PERMISSIONS",
    "STATEMENT_PAGE_LINES",
    "Actor",
    "AuditEntry",
    "AuditFilter",
    "AuditLog",
    "BackOffice",
    "BatchDetail",
    "BatchRow",
    "Cursor",
    "Cutoff",
    "ExceptionFilter",
    "ExceptionItem",
    "ExceptionWork",
    "FeeField",
    "HistoryStep",
    "LockedAddress",
    "Money",
    "Overview",
    "OwnerFees",
    "Permission",
    "Queries",
    "Resolution",
    "Role",
    "ScheduleEntry",
    "Scope",
    "Session",
    "Staff",
    "StatementPage",
    "SupportView",
    "TerminalRow",
    "TermsEntry",
    "Ticket",
    "TransactionFilter",
    "TransactionRow",
    "User",
    "beijing",
    "check_day",
    "clean_text",
    "cleared_note",
    "cutoff_on",
    "exception_settlement",
    "fee_book",
    "mask_card_numbers",
    "may",
    "parse_beijing",
    "parse_cutoff",
    "parse_ids",
    "render_statement",
    "schedule_rates",
    "search_statement",
    "statement_csv",
    "statement_page",
    "statement_page_param",
    "trading_day",
    "trading_day_bounds",
]
