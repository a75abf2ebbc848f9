"""`posbatch host doctor` (and the support desk's page, which shows it) over the host's
exception records (差错): the money in question is what the back office resolves — the
difference of an amount-differs — and a record the back office resolved is not still
"to work off"."""

from __future__ import annotations

from datetime import UTC, datetime

from host_helpers import PAN, Terminal

from posbatch.backoffice import Actor, BackOffice
from posbatch.batch.model import CardType, Kind
from posbatch.batch.totals import compute_totals
from posbatch.doctor import Status, diagnose_from_host
from posbatch.host import HostStore
from posbatch.wire import UploadRecord
from testbed import TERMINAL_ID

NOW = datetime(2026, 12, 5, 15, 30, tzinfo=UTC)  # 23:30 Beijing


def _amounts_differ(term: Terminal) -> None:
    """The terminal says 25.00 for a sale the host approved at 20.00 (and 10.00 agreed)."""
    a, b = term.sale(1000), term.sale(2000)
    domestic = CardType.DOMESTIC
    term.settle(compute_totals([(Kind.SALE, 1000, domestic), (Kind.SALE, 2500, domestic)]))
    term.upload(
        (UploadRecord(domestic, a.stan, PAN, 1000), UploadRecord(domestic, b.stan, PAN, 2500))
    )
    assert term.upload_end(2).response_code == "00"


def _exceptions_check(store: HostStore) -> tuple[Status, str]:
    report = diagnose_from_host(store, TERMINAL_ID, now=NOW)
    (check,) = [c for c in report.diagnosis.checks if c.key == "host.exceptions"]
    return check.status, " / ".join(line.en for line in check.lines)


def test_the_money_in_question_of_an_amount_differs_is_the_difference(
    store: HostStore, term: Terminal
) -> None:
    """25.00 uploaded, 20.00 approved: 5.00 in question (it said 20.00, the host's amount,
    where the back office's resolution defaults to, and is bounded by, the difference)."""
    _amounts_differ(term)
    status, text = _exceptions_check(store)
    shown = (status, "RMB 5.00 in question" in text, "20.00" in text)
    assert (Status.WARNING, True, False) == shown


def test_a_resolved_exception_is_not_left_to_work_off(store: HostStore, term: Terminal) -> None:
    """Once the back office resolved the record, the diagnosis passes the check and no longer
    tells the merchant the back office works it off."""
    _amounts_differ(term)
    office = BackOffice(store, clock=lambda: NOW)
    (item,) = store.exceptions(TERMINAL_ID)
    office.exceptions.resolve(
        Actor("sam", "support", "127.0.0.1"), [item.exception_id], "confirm-host",
        "the merchant agreed", now=NOW,
    )  # fmt: skip
    report = diagnose_from_host(store, TERMINAL_ID, now=NOW)
    steps = " ".join(line.en for line in report.diagnosis.person_steps)
    assert (
        (Status.PASSED, "1 record, all resolved by the back office"),
        False,
        [True],
    ) == (_exceptions_check(store), "works off" in steps, [x.resolved for x in store.exceptions()])


def test_the_cause_of_an_amount_differs_is_in_yuan_like_every_amount_beside_it(
    store: HostStore, term: Terminal
) -> None:
    """The exception page, its CSV and the merchant's statement show the cause beside the
    amounts in yuan (25.00 / 20.00): the cause said '2500 fen … 2000 fen'."""
    _amounts_differ(term)
    (item,) = store.exceptions(TERMINAL_ID)
    assert "sale STAN 000003: terminal uploaded 25.00, host approved 20.00" == item.cause
