"""Two devices set up with one terminal ID, trading to one host at the same time: doctor
names it (duplicate_terminal_id) from the host batch where their transactions interleave,
tells the desk which STANs are the other device's, and ``--fix`` touches nothing.

Built for real: a terminal with two settled days, then a second device (a new install with
its own journal, or a copy of this terminal's data directory) and both selling in turn.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from doctor_samples import evidence, journal
from doctor_world import PAN, World

from posbatch.doctor import (
    Cause,
    HostEntry,
    HostSources,
    JournalAnswer,
    Outcome,
    Repair,
    Strength,
    TerminalSite,
    Verdict,
    always_yes,
    diagnose,
    diagnose_from_host,
    examine,
    read_bundle,
    render_text,
    rule_for,
    write_bundle,
)
from posbatch.host.issuer import TEST_PAN_APPROVED
from testbed import TERMINAL_ID

# --- built for real -------------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["new-install", "cloned-install"])
def second(request: pytest.FixtureRequest, world: World) -> Iterator[TerminalSite]:
    """A second device under the world's terminal ID; both sell three times in turn."""
    world.established()
    other = world.second_device(cloned=request.param)
    for index in range(3):
        assert world.terminal.sale(2000 + index, PAN).approved
        assert other.terminal.sale(3000 + index, PAN).approved
    yield other


def _host_state(world: World) -> list[tuple[int, str, int]]:
    return [
        (
            batch.batch_no,
            batch.state.value,
            len(world.store.transactions(TERMINAL_ID, batch.batch_no)),
        )
        for batch in world.store.batches(TERMINAL_ID)
    ]


def test_each_device_is_told_another_trades_under_its_terminal_id(
    world: World, second: TerminalSite
) -> None:
    """Both devices' doctor (with the host store) names duplicate_terminal_id, not a
    replaced journal or a reset, and says the terminal ID."""
    for site in (world.site, second):
        report = examine(site, host_store=world.store)
        assert report.diagnosis.outcome == Outcome.FOUND
        assert report.diagnosis.cause == Cause.DUPLICATE_TERMINAL_ID
        assert report.diagnosis.finding(Cause.JOURNAL_REPLACED).verdict == Verdict.RULED_OUT
        assert report.diagnosis.finding(Cause.COUNTERS_RESET).verdict == Verdict.RULED_OUT
        text = render_text(report)
        assert "another device is trading under this terminal ID (10000001)" in text


def test_the_foreign_stans_are_the_other_devices_sales(world: World, second: TerminalSite) -> None:
    """The evidence names, by STAN and amount, exactly the other device's sales in the batch."""
    report = examine(world.site, host_store=world.store)
    theirs = [
        f"{txn.stan:06d} sale RMB {txn.amount_fen / 100:.2f}"
        for txn in second.terminal.journal.transactions()
        if txn.amount_fen >= 3000 and txn.state == "approved"
    ]
    line = report.diagnosis.finding(Cause.DUPLICATE_TERMINAL_ID).lines[0].en
    named = line.split("message numbers (STAN) ")[1].split(", ")
    assert theirs == named
    assert "3 transactions this journal never made" in line


def test_no_card_number_in_what_the_desk_reads(world: World, second: TerminalSite) -> None:
    """The report holds no card number, not even masked: the STAN says which sale."""
    text = render_text(examine(world.site, host_store=world.store))
    assert TEST_PAN_APPROVED not in text
    assert TEST_PAN_APPROVED[:6] not in text


def test_fix_changes_nothing_on_either_side(world: World, second: TerminalSite) -> None:
    """``--fix`` plans no repair and does none: no batch closed, no sign-on, no sale moved."""
    sites = (world.site, second)
    before = (
        _host_state(world),
        [site.terminal.journal.state() for site in sites],
        [site.terminal.journal.transactions() for site in sites],
        [site.terminal.journal.batches() for site in sites],
    )
    report = examine(world.site, fix=True, confirm=always_yes, host_store=world.store)
    after = (
        _host_state(world),
        [site.terminal.journal.state() for site in sites],
        [site.terminal.journal.transactions() for site in sites],
        [site.terminal.journal.batches() for site in sites],
    )
    assert ((), ()) == (report.diagnosis.repairs, report.repairs_done)
    assert before == after


def test_named_after_the_other_device_settled(world: World, second: TerminalSite) -> None:
    """Once the other device's settlement closed the shared batch, the closed batch still
    names the cause (what the desk meets: a day of exceptions)."""
    second.terminal.settle()
    report = examine(world.site, host_store=world.store)
    assert report.diagnosis.cause == Cause.DUPLICATE_TERMINAL_ID


def test_without_the_host_store_it_is_not_checked(world: World, second: TerminalSite) -> None:
    """From the echo alone the interleaving cannot be seen: not checked, never claimed."""
    report = examine(second, host_store=None)
    finding = report.diagnosis.finding(Cause.DUPLICATE_TERMINAL_ID)
    assert finding.verdict == Verdict.NOT_CHECKED
    assert report.diagnosis.cause != Cause.DUPLICATE_TERMINAL_ID


def test_one_terminal_trading_alone_rules_it_out(world: World) -> None:
    """A terminal alone on its ID: ruled out, the healthy verdict unchanged."""
    world.established()
    report = examine(world.site, host_store=world.store)
    assert report.diagnosis.finding(Cause.DUPLICATE_TERMINAL_ID).verdict == Verdict.RULED_OUT
    assert report.diagnosis.outcome == Outcome.HEALTHY


def test_a_journal_copied_back_is_not_a_second_device(world: World) -> None:
    """An older copy put back (the host holds one run of sales it lacks) is journal_replaced,
    and once it trades again (94, the engine settles) duplicates — as before: one journal
    that stopped and came back, not two devices."""
    world.established()
    copy = world.copy_journal()
    world.sales(2)
    world.copy_back(copy)
    causes = [examine(world.site, host_store=world.store).diagnosis]
    world.sales(2)
    causes.append(examine(world.site, host_store=world.store).diagnosis)
    assert [Cause.JOURNAL_REPLACED, Cause.DUPLICATES] == [d.cause for d in causes]
    assert [Verdict.RULED_OUT] * 2 == [
        d.finding(Cause.DUPLICATE_TERMINAL_ID).verdict for d in causes
    ]


def test_a_request_met_94_between_the_other_devices_sales_names_it(world: World) -> None:
    """A copy of the terminal sells twice after the terminal's sale; the terminal's refund
    then meets 94 (the copy holds that STAN), so the host keeps nothing of it; the copy sells
    again. No kept transaction of the terminal comes between two of the copy's — but its
    refund was answered between them, by the host's clock: two devices, not a copy put back
    (before: ambiguous, duplicates + journal_replaced; seed 3 of the simulator's
    second-device profile, docs/sim.md)."""
    world.established()
    other = world.second_device(cloned=True)
    sale = world.terminal.sale(2000, PAN)
    for index in range(2):
        assert other.terminal.sale(3000 + index, PAN).approved
    refund = world.terminal.refund(sale.stan, 500)
    assert other.terminal.sale(3002, PAN).approved
    diagnosis = examine(world.site, host_store=world.store).diagnosis
    lines = " ".join(line.en for line in diagnosis.finding(Cause.DUPLICATE_TERMINAL_ID).lines)
    expected = (
        "94",
        Cause.DUPLICATE_TERMINAL_ID,
        Verdict.RULED_OUT,
        True,
    )
    assert expected == (
        refund.response_code,
        diagnosis.cause,
        diagnosis.finding(Cause.JOURNAL_REPLACED).verdict,
        f"then its refund {refund.stan:06d} RMB 5.00 (batch 000003, answered 94 at" in lines,
    )


def test_the_host_alone_sees_a_new_install_by_its_stans_going_back(world: World) -> None:
    """``posbatch host doctor``: a new install's STANs interleave with the old device's in
    one batch, going back at each turn — a sign, and the desk is told to run doctor on
    the terminal with the host's records."""
    world.established()
    other = world.second_device(cloned=False)
    for index in range(3):
        assert world.terminal.sale(2000 + index, PAN).approved
        assert other.terminal.sale(3000 + index, PAN).approved
    report = diagnose_from_host(world.store, TERMINAL_ID, now=world.clock())
    finding = report.diagnosis.finding(Cause.DUPLICATE_TERMINAL_ID)
    assert (Verdict.POINTS, Strength.SIGN) == (finding.verdict, finding.strength)
    assert "message numbers (STAN) go back" in finding.lines[0].en
    assert "--host-db" in finding.lines[-1].en


def test_the_host_alone_claims_nothing_for_one_terminal(world: World) -> None:
    """One terminal alone, from the host's records: not checked (the journal is needed)."""
    world.established()
    report = diagnose_from_host(world.store, TERMINAL_ID, now=world.clock())
    finding = report.diagnosis.finding(Cause.DUPLICATE_TERMINAL_ID)
    assert finding.verdict == Verdict.NOT_CHECKED


# --- the pure rule ----------------------------------------------------------------------------


def _batch(pattern: str) -> HostSources:
    """``"OFO"``: own, foreign, own, in the host's order (STANs 1, 2, 3; 10.00 each)."""
    return HostSources(
        7,
        "OPEN",
        tuple(
            HostEntry(index + 1, "sale", 1000, mark == "O") for index, mark in enumerate(pattern)
        ),
    )


@pytest.mark.parametrize(
    ("pattern", "two_devices"),
    [
        ("OOO", False),
        ("OOFF", False),  # another journal's sales after this one's: a reinstall elsewhere
        ("FFOO", False),  # this one after another's: a reinstall, a new install
        ("OFFO", False),  # an older copy put back: the newer one's sales, then its own again
        ("FOF", True),
        ("OFOF", True),
        ("FFOOFO", True),
    ],
)
def test_interleaving_is_what_names_two_devices(pattern: str, two_devices: bool) -> None:
    """Only another's transaction after this journal's that came after another's: one
    journal that stopped and came back leaves one run of what it lacks."""
    finding = diagnose(evidence(host_sources=(_batch(pattern),))).finding(
        Cause.DUPLICATE_TERMINAL_ID
    )
    assert finding.verdict == (Verdict.POINTS if two_devices else Verdict.RULED_OUT)


def test_pending_reversals_are_not_sent_for_two_devices() -> None:
    """No repair at all, not even the reversals: one may meet the other device's sale."""
    diagnosis = diagnose(
        evidence(journal=journal(pending_reversals=2), host_sources=(_batch("FOF"),))
    )
    assert diagnosis.cause == Cause.DUPLICATE_TERMINAL_ID
    assert Repair.FLUSH_REVERSALS not in diagnosis.repairs
    assert diagnosis.repairs == ()


def test_a_long_foreign_list_is_cut_and_counted() -> None:
    """At most eight foreign STANs are named; the rest are counted."""
    finding = diagnose(evidence(host_sources=(_batch("F" * 6 + "O" + "F" * 6),))).finding(
        Cause.DUPLICATE_TERMINAL_ID
    )
    assert "12 transactions this journal never made" in finding.lines[0].en
    assert finding.lines[0].en.endswith("and 4 more")
    assert "另有 4 笔" in finding.lines[0].zh


# --- many days of two devices, drawn from seeds ----------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_seeded_interleavings_are_named_on_both_devices(world: World, seed: int) -> None:
    """Two devices under one ID (new or cloned install), selling and settling in an order
    drawn from ``seed``: whenever a recent host batch interleaves their sales, doctor on
    either device names duplicate_terminal_id, plans nothing, and the card number stays out;
    before the second device's first sale, it is never named."""
    draw = random.Random(seed)
    world.established()
    before = examine(world.site, host_store=world.store).diagnosis
    assert before.finding(Cause.DUPLICATE_TERMINAL_ID).verdict == Verdict.RULED_OUT
    other = world.second_device(cloned=draw.random() < 0.5)
    devices = (world.site, other)
    for step in range(draw.randint(6, 12)):
        site = devices[step % 2] if step < 4 else draw.choice(devices)
        if step >= 4 and draw.random() < 0.15:
            site.terminal.settle()
        else:
            assert site.terminal.sale(draw.randint(100, 99_999), PAN).approved
    for site in devices:
        report = examine(site, host_store=world.store)
        assert (Cause.DUPLICATE_TERMINAL_ID, ()) == (
            report.diagnosis.cause,
            report.diagnosis.repairs,
        )
        assert TEST_PAN_APPROVED[:6] not in render_text(report)


@pytest.mark.parametrize(
    ("stans", "points"),
    [
        ((14, 4, 17), False),  # one step back: a journal that came back once
        ((14, 4, 17, 7, 20, 10), True),
        ((999_998, 999_999, 1, 2), False),  # the counter wrapping
        ((999_999, 1, 999_998, 2), False),  # wraps are not steps back
    ],
)
def test_host_alone_counts_steps_back_not_wraps(stans: tuple[int, ...], points: bool) -> None:
    """From the host's records alone, two or more steps back in one batch are a sign."""
    sources = HostSources(7, "OPEN", tuple(HostEntry(s, "sale", 1000, None) for s in stans))
    finding = diagnose(evidence(journal=None, host_sources=(sources,))).finding(
        Cause.DUPLICATE_TERMINAL_ID
    )
    assert finding.verdict == (Verdict.POINTS if points else Verdict.NOT_CHECKED)


def test_a_replaced_journal_warns_of_a_second_device_before_fix() -> None:
    """Without the host store a second device looks like journal_replaced, whose --fix
    settles the host's batch: its steps say to stop a possible second device first."""
    steps = [step.en for step in rule_for(Cause.JOURNAL_REPLACED).person_steps]
    assert any("take it out of service before `posbatch doctor --fix`" in s for s in steps)


def test_the_bundle_keeps_the_evidence(world: World, second: TerminalSite, tmp_path: Path) -> None:
    """The support bundle carries the host's sources and reads back as the same report;
    it names the cause, and no card number beyond its first 6 / last 4 (the host's exception
    records quote them masked)."""
    report = examine(world.site, host_store=world.store)
    path = tmp_path / "support.json"
    written = write_bundle(report, path)
    assert report == read_bundle(path)
    text = written[0].read_text(encoding="utf-8") + written[1].read_text(encoding="utf-8")
    assert "duplicate_terminal_id" in text
    assert TEST_PAN_APPROVED not in text


def test_a_diagnosis_reads_the_host_batches_once(
    world: World, second: TerminalSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host's records and its batches' sources are told from one read of its batches
    (and their transactions), on the terminal and from the host alone."""
    calls = {"batches": 0, "transactions": 0}
    store = world.store
    batches = len(store.batches(TERMINAL_ID))
    for name in calls:
        method = getattr(store, name)

        def counted(
            *args: object, _name: str = name, _method: Callable[..., object] = method, **kw: object
        ) -> object:
            calls[_name] += 1
            return _method(*args, **kw)

        monkeypatch.setattr(store, name, counted)
    examine(world.site, host_store=store)
    assert calls == {"batches": 1, "transactions": batches}
    calls.update(batches=0, transactions=0)
    diagnose_from_host(store, TERMINAL_ID, now=world.clock())
    assert calls == {"batches": 1, "transactions": batches}


# --- by the host's clock: this journal answered between two of another's transactions -------

_T0 = datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC)


def _timed(pattern: str, answered_at_s: float) -> HostSources:
    """``pattern`` of own/foreign sales one minute apart (as ``_batch``), and a refund of this
    journal the host answered 94 (keeping nothing) ``answered_at_s`` after the first."""
    entries = tuple(
        HostEntry(i + 1, "sale", 1000, mark == "O", _T0 + timedelta(minutes=i))
        for i, mark in enumerate(pattern)
    )
    answer = JournalAnswer(9, "refund", 500, "94", _T0 + timedelta(seconds=answered_at_s))
    return HostSources(7, "OPEN", entries, (answer,))


@pytest.mark.parametrize(
    ("pattern", "answered_at_s", "two_devices"),
    [
        ("OFF", 90, True),  # answered between the two foreign sales
        ("OFF", 150, False),  # after both: a copy put back meets 94 there
        ("FFO", 30, False),  # another's, own, another's, own: a reinstall, then a copy put back
        ("OFF", 60, False),  # in the same second as the first foreign sale: not after it
        ("OFF", 120, False),  # in the same second as the second one: not before it
        ("OFF", 119, True),  # answered within 119–120 s: before the second one
        ("OFO", 90, False),  # one foreign sale: nothing to be between
    ],
)
def test_an_answer_between_two_foreign_transactions_by_the_host_clock(
    pattern: str, answered_at_s: float, two_devices: bool
) -> None:
    """Own, another's, own, another's by the host's clock names a second device; another's,
    own, another's does not (a journal that came back twice in a day). The answer's time is
    to the second: a foreign transaction in that second is neither before nor after it."""
    finding = diagnose(
        evidence(journal=journal(), host_sources=(_timed(pattern, answered_at_s),))
    ).finding(Cause.DUPLICATE_TERMINAL_ID)
    assert finding.verdict == (Verdict.POINTS if two_devices else Verdict.RULED_OUT)
