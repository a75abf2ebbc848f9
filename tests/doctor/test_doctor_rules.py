"""The pure rule engine on hand-made evidence: each cause, healthy, missing and ambiguous."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from doctor_samples import NOW, evidence, host_view, journal, network

from posbatch.doctor import (
    RULES,
    BackupInfo,
    BatchAdvance,
    Cause,
    HostBatch,
    HostException,
    HostRecords,
    LocalBatchState,
    ManualEdit,
    Outcome,
    Repair,
    Report,
    SoftwareUpdate,
    Status,
    Verdict,
    diagnose,
    render_text,
)
from posbatch.doctor._repair import settlement_started_on_host
from testbed import TERMINAL_ID


def _records(**changes: object) -> HostRecords:
    base = HostRecords(
        terminal_id=TERMINAL_ID,
        registered=True,
        signed_on=True,
        batch_no=7,
        batch_state="OPEN",
        last_stan=120,
        batches=(
            HostBatch(6, "CLOSED", 4, 9000, "balanced", NOW - timedelta(hours=29), "settlement"),
        ),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_healthy_terminal_has_no_failure_and_no_cause() -> None:
    """Matching batch numbers, intact journal, a clean network: healthy, nothing claimed."""
    diagnosis = diagnose(evidence())
    expected = (Outcome.HEALTHY, None, (), ())
    assert expected == (
        diagnosis.outcome,
        diagnosis.cause,
        diagnosis.repairs,
        diagnosis.symptoms,
    )


def test_healthy_terminal_rules_out_every_cause_it_can_check() -> None:
    """On a healthy terminal no rule points at a cause."""
    diagnosis = diagnose(evidence())
    expected = []
    assert expected == [c for c, f in diagnosis.findings if f.verdict == Verdict.POINTS]


def test_every_taxonomy_cause_has_one_rule() -> None:
    """The rule table covers the taxonomy exactly once."""
    expected = sorted(Cause)
    assert expected == sorted(rule.cause for rule in RULES)


def test_every_rule_has_steps_and_prevention_in_both_languages() -> None:
    """A cause without advice for a person, in Chinese and English, is a gap."""
    missing = [
        rule.cause
        for rule in RULES
        if not rule.person_steps
        or not rule.prevention
        or not all(line.en and line.zh for line in (*rule.person_steps, *rule.prevention))
    ]
    expected = []
    assert expected == missing


def test_manual_entry_is_found_from_a_typed_batch_that_differs_from_the_host() -> None:
    """A batch typed in by hand as 000070 while the host is at 000007 is an input error."""
    edit = ManualEdit(NOW - timedelta(hours=1), 7, 70)
    diagnosis = diagnose(evidence(journal=journal(batch_no=70, manual_edits=(edit,))))
    expected = (Outcome.FOUND, Cause.MANUAL_BATCH_ENTRY)
    assert expected == (diagnosis.outcome, diagnosis.cause)


def test_manual_entry_that_matches_the_host_is_ruled_out() -> None:
    """A typed batch that equals the host's is not a cause."""
    edit = ManualEdit(NOW - timedelta(hours=1), 6, 7)
    diagnosis = diagnose(evidence(journal=journal(manual_edits=(edit,))))
    expected = Verdict.RULED_OUT
    assert expected == diagnosis.finding(Cause.MANUAL_BATCH_ENTRY).verdict


def test_broken_hash_chain_is_a_damaged_journal() -> None:
    """A broken hash chain names the damaged journal and plans a restore when a backup exists."""
    backup = BackupInfo(NOW - timedelta(days=1), 6, 100, "/backup/journal.db")
    diagnosis = diagnose(
        evidence(journal=journal(chain_intact=False, first_bad_row=42, backup=backup))
    )
    expected = (Cause.JOURNAL_DAMAGED, Repair.RESTORE_BACKUP)
    assert expected == (
        diagnosis.cause,
        diagnosis.repairs[0],
    )


def test_damaged_journal_without_backup_plans_no_restore() -> None:
    """No backup, no restore step: doctor does not promise what it cannot do."""
    diagnosis = diagnose(evidence(journal=journal(chain_intact=False)))
    assert Repair.RESTORE_BACKUP not in diagnosis.repairs


def test_fresh_journal_behind_the_host_is_a_counters_reset() -> None:
    """A journal that started at 000001 while the host is at 000007 had its counters reset."""
    fresh = journal(batch_no=1, last_stan=3, settled_batches=0, fresh_start=True)
    diagnosis = diagnose(evidence(journal=fresh))
    expected = Cause.COUNTERS_RESET
    assert expected == diagnosis.cause


def test_open_batch_the_host_holds_for_upload_is_an_older_journal() -> None:
    """The host holds the journal's batch waiting for batch upload, yet the batch is open
    here: another journal sent its 0500 — an early copy put back (counters reset) or an
    older one (journal replaced); was 'unexplained' (simulator, heavy seed 57)."""
    uploading = host_view(batch_no=1, batch_state="UPLOADING", last_closed_batch_no=None)
    fresh = journal(batch_no=1, last_stan=7, settled_batches=0, fresh_start=True)
    older = journal(batch_no=7, fresh_start=False)
    causes = [
        diagnose(evidence(journal=fresh, host_view=uploading)).cause,
        diagnose(evidence(journal=older, host_view=replace(uploading, batch_no=7))).cause,
    ]
    assert [Cause.COUNTERS_RESET, Cause.JOURNAL_REPLACED] == causes


def test_fresh_journal_of_a_new_terminal_is_not_a_reset() -> None:
    """A new terminal at batch 000001 on a host at 000001 is healthy."""
    fresh = journal(batch_no=1, last_stan=3, settled_batches=0, fresh_start=True)
    view = host_view(batch_no=1, last_closed_batch_no=None)
    diagnosis = diagnose(evidence(journal=fresh, host_view=view))
    expected = Outcome.HEALTHY
    assert expected == diagnosis.outcome


def test_clock_off_by_hours_is_a_wrong_clock() -> None:
    """A terminal clock two days ahead of the host is named."""
    view = host_view(terminal_time=NOW + timedelta(days=2))
    diagnosis = diagnose(evidence(host_view=view))
    expected = Cause.CLOCK_WRONG
    assert expected == diagnosis.cause


def test_unanswered_settlement_of_a_batch_the_host_closed_is_a_lost_response() -> None:
    """0500 sent, no 0510, host closed the batch and moved on: the answer was lost."""
    settling = journal(batch_state=LocalBatchState.SETTLING, settlement_request_unanswered=True)
    view = host_view(batch_no=8, last_closed_batch_no=7)
    diagnosis = diagnose(evidence(journal=settling, host_view=view))
    expected = (Cause.LOST_RESPONSE, (Repair.RESUME_SETTLEMENT,))
    assert expected == (
        diagnosis.cause,
        diagnosis.repairs,
    )


def test_lost_echoes_are_network_timeouts() -> None:
    """Two of five echo tests unanswered: the network loses messages."""
    probe = network(echo_round_trips_ms=(3, None, 4, None, 3))
    diagnosis = diagnose(evidence(network=probe))
    expected = Cause.NETWORK_TIMEOUTS
    assert expected == diagnosis.cause


def test_pending_reversals_with_a_good_network_now_point_to_earlier_timeouts() -> None:
    """Pending reversals are a sign of timeouts; the plan flushes them first."""
    diagnosis = diagnose(evidence(journal=journal(pending_reversals=1, unanswered_requests=1)))
    expected = (Cause.NETWORK_TIMEOUTS, Repair.FLUSH_REVERSALS)
    assert expected == (
        diagnosis.cause,
        diagnosis.repairs[0],
    )


def test_duplicate_exceptions_on_the_host_are_duplicates() -> None:
    """The host's exception records naming duplicates point to duplicates."""
    records = _records(exceptions=(HostException(7, 55, "duplicate transaction", 100),))
    diagnosis = diagnose(evidence(host_records=records))
    expected = Cause.DUPLICATES
    assert expected == diagnosis.cause


def test_update_that_changed_counters_is_a_software_update_mismatch() -> None:
    """An update that moved the batch 000007 → 000001 while the host stayed at 000007."""
    update = SoftwareUpdate(NOW - timedelta(hours=2), "1.0.0", "1.1.0", 7, 1, 120, 1)
    changed = journal(batch_no=1, last_stan=2, updates=(update,), fresh_start=False)
    diagnosis = diagnose(evidence(journal=changed))
    expected = Cause.SOFTWARE_UPDATE
    assert expected == diagnosis.cause


def test_back_office_advance_in_the_host_records_is_a_host_change() -> None:
    """The host store shows the back office moved the batch 000007 → 000008."""
    records = _records(
        batch_no=8, advances=(BatchAdvance(NOW - timedelta(hours=1), 7, 8, "cut-over"),)
    )
    diagnosis = diagnose(evidence(host_records=records))
    expected = Cause.HOST_CHANGE
    assert expected == diagnosis.cause


def test_host_closing_a_batch_the_terminal_never_settled_points_to_the_host_side() -> None:
    """From sign-on alone: host ahead, our batch closed there, nothing changed locally."""
    view = host_view(batch_no=8, last_closed_batch_no=7)
    diagnosis = diagnose(evidence(journal=journal(fresh_start=False), host_view=view))
    expected = (Outcome.FOUND, Cause.HOST_CHANGE)
    assert expected == (diagnosis.outcome, diagnosis.cause)


def test_half_done_upload_on_an_open_host_batch_is_an_interrupted_settlement() -> None:
    """Three of ten records uploaded, host batch still UPLOADING: settlement interrupted."""
    uploading = journal(
        batch_state=LocalBatchState.UPLOADING,
        upload_records_total=10,
        upload_records_acknowledged=3,
    )
    diagnosis = diagnose(evidence(journal=uploading, host_view=host_view(batch_state="UPLOADING")))
    expected = Cause.SETTLEMENT_INTERRUPTED
    assert expected == diagnosis.cause


def test_batch_open_for_three_days_is_stale() -> None:
    """The first approval three days ago and no settlement since: a day off."""
    old = journal(oldest_unsettled_at=NOW - timedelta(days=3))
    diagnosis = diagnose(evidence(journal=old))
    expected = Cause.STALE_BATCH
    assert expected == diagnosis.cause


def test_journal_without_host_claims_no_batch_cause() -> None:
    """A typed batch with no host answer: doctor cannot tell whether it was wrong."""
    edit = ManualEdit(NOW - timedelta(hours=1), 7, 70)
    diagnosis = diagnose(
        evidence(journal=journal(batch_no=70, manual_edits=(edit,)), host_view=None, network=None)
    )
    expected = (Verdict.NOT_CHECKED, None)
    assert expected == (
        diagnosis.finding(Cause.MANUAL_BATCH_ENTRY).verdict,
        diagnosis.cause,
    )


def test_two_proofs_make_an_ambiguous_diagnosis_listing_both() -> None:
    """A typed batch and a counter-changing update, both at odds with the host: ambiguous."""
    update = SoftwareUpdate(NOW - timedelta(hours=3), "1.0.0", "1.1.0", 7, 1, 120, 1)
    edit = ManualEdit(NOW - timedelta(hours=1), 1, 70)
    both = journal(batch_no=70, manual_edits=(edit,), updates=(update,), fresh_start=False)
    diagnosis = diagnose(evidence(journal=both))
    expected = (Outcome.AMBIGUOUS, {Cause.MANUAL_BATCH_ENTRY, Cause.SOFTWARE_UPDATE})
    assert expected == (
        diagnosis.outcome,
        set(diagnosis.candidates),
    )


def test_mismatch_with_no_evidence_for_any_cause_is_unexplained() -> None:
    """Host ahead, yet the host records show no change and nothing local explains it."""
    records = _records(batch_no=9)
    diagnosis = diagnose(
        evidence(journal=journal(fresh_start=False), host_records=records, host_view=None)
    )
    expected = (Outcome.UNEXPLAINED, None, True)
    assert expected == (
        diagnosis.outcome,
        diagnosis.cause,
        Cause.CLOCK_WRONG in diagnosis.candidates,
    )


def test_batch_number_check_fails_when_the_numbers_differ() -> None:
    """Terminal 000070 vs host 000007 is a failed batch-number check."""
    diagnosis = diagnose(evidence(journal=journal(batch_no=70)))
    check = next(c for c in diagnosis.checks if c.key == "batch.number")
    expected = Status.FAILED
    assert expected == check.status


def test_unreachable_host_is_a_network_cause() -> None:
    """No TCP connection at all (the connect timed out): the network is the cause."""
    probe = network(tcp_reachable=False, connect_ms=None, echo_round_trips_ms=(), error="timeout")
    diagnosis = diagnose(evidence(network=probe, host_view=host_view(reached=False)))
    expected = Cause.NETWORK_TIMEOUTS
    assert expected == diagnosis.cause


def test_refused_connection_means_the_host_is_not_listening() -> None:
    """A refused connection is the host program, not the line: no cable/router/SIM advice,
    nothing doctor can repair, the acquirer must start its host."""
    probe = network(tcp_reachable=False, connect_ms=None, echo_round_trips_ms=(), error="refused")
    diagnosis = diagnose(evidence(network=probe, host_view=host_view(reached=False)))
    advice = " ".join(line.en for line in diagnosis.person_steps)
    expected = (Cause.HOST_NOT_LISTENING, (), False, True)
    assert expected == (
        diagnosis.cause,
        diagnosis.repairs,
        "SIM" in advice,
        "host program is not running" in advice,
    )


def test_lost_first_settlement_of_a_new_terminal_is_not_a_reset() -> None:
    """A new journal whose first 0510 was lost: the host closed that very batch — no reset."""
    first = journal(
        batch_no=1,
        settled_batches=0,
        fresh_start=True,
        batch_state=LocalBatchState.SETTLING,
        settlement_request_unanswered=True,
    )
    view = host_view(batch_no=2, last_closed_batch_no=1)
    diagnosis = diagnose(evidence(journal=first, host_view=view))
    expected = (Outcome.FOUND, Cause.LOST_RESPONSE)
    assert expected == (diagnosis.outcome, diagnosis.cause)


def test_back_office_advance_of_a_new_terminal_is_not_a_reset() -> None:
    """A new terminal's first batch closed by the back office is a host change, not a reset."""
    first = journal(batch_no=1, settled_batches=0, fresh_start=True)
    view = host_view(batch_no=2, last_closed_batch_no=1, last_closed_reason="ADVANCED")
    diagnosis = diagnose(evidence(journal=first, host_view=view))
    expected = (Outcome.FOUND, Cause.HOST_CHANGE)
    assert expected == (diagnosis.outcome, diagnosis.cause)


def test_ambiguous_report_says_so_and_names_each_candidate() -> None:
    """The printed report of an ambiguous diagnosis says so and names every candidate."""
    update = SoftwareUpdate(NOW - timedelta(hours=3), "1.0.0", "1.1.0", 7, 1, 120, 1)
    edit = ManualEdit(NOW - timedelta(hours=1), 1, 70)
    both = journal(batch_no=70, manual_edits=(edit,), updates=(update,), fresh_start=False)
    sample = evidence(journal=both)
    text = render_text(Report(NOW, "terminal", sample, diagnose(sample)), width=200)
    expected = (True, True, True)
    assert expected == (
        "Ambiguous" in text,
        "candidate 可能原因: batch number typed in by hand" in text,
        "candidate 可能原因: mismatch after a software update" in text,
    )


def test_healthy_report_without_the_host_says_what_was_not_checked() -> None:
    """No host answer: 'no failure found in what could be checked', naming what was not."""
    sample = evidence(host_view=None, network=None)
    text = render_text(Report(NOW, "terminal", sample, diagnose(sample)), width=200)
    assert "not checked: " in text.split("diagnosis")[1]


def test_plan_has_no_flush_step_when_nothing_is_pending() -> None:
    """A stale batch with no pending reversal is repaired by settling alone: its end of day
    has passed, so the plan settles it now."""
    diagnosis = diagnose(evidence(journal=journal(oldest_unsettled_at=NOW - timedelta(days=3))))
    assert (Repair.SETTLE_BATCH,) == diagnosis.repairs


def test_wrong_clock_plans_no_settlement_of_the_open_batch() -> None:
    """A wrong clock plans only RESUME_SETTLEMENT (which finishes a settlement already
    started and leaves an open batch open), never SETTLE_BATCH."""
    view = host_view(terminal_time=NOW + timedelta(days=2))
    diagnosis = diagnose(evidence(host_view=view))
    assert (Repair.RESUME_SETTLEMENT,) == diagnosis.repairs


def test_only_stale_and_full_batches_are_settled_whatever_their_step() -> None:
    """SETTLE_BATCH (settle the open batch now) is planned only where the end of day has
    passed or the batch can count no more; every other settlement step is a resume."""
    settling_now = sorted(rule.cause for rule in RULES if Repair.SETTLE_BATCH in rule.repairs)
    assert [Cause.BATCH_FULL, Cause.STALE_BATCH] == settling_now


def test_settlement_started_on_host_reads_the_hosts_batch_state() -> None:
    """The host closed or is uploading the terminal's batch → started; the host holds it
    open, knows nothing, or was not reached → not started."""
    records = _records(
        batch_no=9,
        batches=(
            HostBatch(7, "CLOSED", 3, 4500, "balanced", NOW, "balanced"),
            HostBatch(8, "UPLOADING", 1, 100),
            HostBatch(9, "OPEN", 1, 100),
        ),
    )
    cases = {
        "closed (store)": evidence(host_records=records),
        "uploading (store)": evidence(journal=journal(batch_no=8), host_records=records),
        "open (store)": evidence(journal=journal(batch_no=9), host_records=records),
        "closed (field 63)": evidence(host_view=host_view(batch_no=8, last_closed_batch_no=7)),
        "uploading (field 63)": evidence(host_view=host_view(batch_state="UPLOADING")),
        "open (field 63)": evidence(),
        "not reached": evidence(host_view=host_view(reached=False, last_closed_batch_no=7)),
    }
    started = {
        name: settlement_started_on_host(sample, sample.journal.batch_no if sample.journal else 0)
        for name, sample in cases.items()
    }
    expected = {
        "closed (store)": True,
        "uploading (store)": True,
        "open (store)": False,
        "closed (field 63)": True,
        "uploading (field 63)": True,
        "open (field 63)": False,
        "not reached": False,
    }
    assert expected == started


def test_times_are_told_in_beijing_time() -> None:
    """DESIGN.md: times are stored in UTC and shown in Beijing time. A batch typed in by
    hand at 17:00 UTC was typed at 01:00 the next day in the shop."""
    edit = ManualEdit(NOW - timedelta(hours=1), 7, 70)  # NOW is 18:00 UTC on 25 Nov
    sample = evidence(journal=journal(batch_no=70, manual_edits=(edit,)))
    diagnosis = diagnose(sample)
    text = render_text(Report(NOW, "terminal", sample, diagnosis), width=200)
    assert diagnosis.cause == Cause.MANUAL_BATCH_ENTRY
    assert "2026-11-26 01:00 batch" in text  # the line of the edit
    assert "2026-11-26 02:00:00" in text  # the report's own time
    assert "17:00" not in text


def test_an_80_column_report_cuts_no_chinese_line() -> None:
    """A Chinese line has no spaces to wrap at: in a narrow column it is folded onto the
    next line, never cut with '…' (an 80-column terminal lost the end of 10 lines)."""
    sample = evidence()
    text = render_text(Report(NOW, "terminal", sample, diagnose(sample)), width=80)
    assert "…" not in text


def test_clocks_in_step_say_how_far_apart_and_what_is_fine() -> None:
    """Not 'the clocks agree within 0 s': how far apart, and the bound."""
    sample = evidence()
    lines = diagnose(sample).finding(Cause.CLOCK_WRONG).lines
    assert [line.en for line in lines] == ["the clocks are 0 s apart (up to 5 minutes is fine)"]


def test_a_clock_days_off_is_told_in_days_and_hours() -> None:
    """'259200 s ahead' was what doctor said of a clock three days ahead: the check and the
    finding now say days and hours (the exact seconds after them), in both languages; a
    few seconds stay seconds."""
    view = host_view(terminal_time=NOW + timedelta(days=3))
    report = diagnose(evidence(host_view=view))
    (finding,) = report.finding(Cause.CLOCK_WRONG).lines
    assert (finding.en, finding.zh) == (
        "the terminal clock is off by 3 days (259200 s) against the host",
        "终端时钟与主机相差 3 天(259200 秒)",
    )
    (check,) = (check for check in report.checks if check.key == "terminal.clock")
    assert [(line.en, line.zh) for line in check.lines] == [
        (
            "the terminal clock is 3 days (259200 s) ahead of the host",
            "终端时钟快于主机 3 天(259200 秒)",
        )
    ]
    close = diagnose(evidence(host_view=host_view(terminal_time=NOW - timedelta(seconds=42))))
    (check,) = (check for check in close.checks if check.key == "terminal.clock")
    assert ["the terminal clock is 42 s behind the host"] == [line.en for line in check.lines]


def test_a_reinstall_that_sold_nothing_yet_is_told_without_stan_000000() -> None:
    """A journal reinstalled in the host's open batch, before its first sale: the 94 its next
    sale would meet is told as "has used no message number (STAN) yet" — STANs run
    000001–999999, and "its last is 000000" read to a desk as one more number to chase."""
    diagnosis = diagnose(
        evidence(
            journal=journal(batch_no=1, last_stan=0, settled_batches=0, approved_count=0),
            host_view=host_view(batch_no=1, last_closed_batch_no=None, last_stan_in_batch=4),
            host_last_stan_in_journal=False,
        )
    )
    lines = [line.en for line in diagnosis.finding(Cause.COUNTERS_RESET).lines]
    expected = (
        Cause.COUNTERS_RESET,
        "this journal has used no message number (STAN) yet: its next sale would reuse a "
        "message number the host holds and be answered 94 (duplicate transaction)",
    )
    assert expected == (diagnosis.cause, lines[2])


def test_host_records_gone_back_are_named_from_the_store() -> None:
    """The host store restored from yesterday's backup while the terminal traded on: the host's
    open batch 000007 holds 1 of the journal's 3 approvals. Doctor used to say "No failure
    found" (found by the desk probe); it names the host-side change, with both counts."""
    records = _records(batches=(*_records().batches, HostBatch(7, "OPEN", 1, 1500)))
    diagnosis = diagnose(evidence(host_records=records))
    lines = [line.en for line in diagnosis.finding(Cause.HOST_CHANGE).lines]
    expected = (
        Outcome.FOUND,
        Cause.HOST_CHANGE,
        "this terminal's open batch 000007 holds 3 approvals (net RMB 45.00); the host's "
        "records of it hold 1 (net RMB 15.00): 2 approvals the host answered are gone from "
        "its records",
    )
    assert expected == (diagnosis.outcome, diagnosis.cause, lines[0])


def test_host_records_gone_back_are_named_from_the_echo_answer() -> None:
    """Echo only: the host's last transaction of the open batch (T=) is one the journal holds,
    and the journal holds an approval after it — the host lacks an approval it gave."""
    diagnosis = diagnose(
        evidence(
            journal=journal(last_stan=120, last_approved_stan=118),
            host_view=host_view(last_stan_in_batch=112),
            host_last_stan_in_journal=True,
        )
    )
    assert (Outcome.FOUND, Cause.HOST_CHANGE) == (diagnosis.outcome, diagnosis.cause)


def test_host_holding_every_approval_is_no_host_change() -> None:
    """The same batch with the host holding all three approvals (or T= the journal's last
    approval): nothing points, healthy."""
    records = _records(batches=(*_records().batches, HostBatch(7, "OPEN", 3, 4500)))
    from_store = diagnose(evidence(host_records=records))
    from_echo = diagnose(
        evidence(
            journal=journal(last_approved_stan=118),
            host_view=host_view(last_stan_in_batch=118),
            host_last_stan_in_journal=True,
        )
    )
    assert (Outcome.HEALTHY, Outcome.HEALTHY) == (from_store.outcome, from_echo.outcome)


def test_host_gone_back_behind_a_settlement_is_named() -> None:
    """The host store restored to before the terminal's last settlement: the host says batch
    000008 is open, behind the terminal's 000009, though its own answer settled 000008. Doctor
    said "the evidence names no cause" (found by the desk probe); it names the host side."""
    diagnosis = diagnose(
        evidence(
            journal=journal(batch_no=9, last_settled_by_host=(8, NOW - timedelta(hours=2))),
            host_view=host_view(batch_no=8, last_closed_batch_no=7),
        )
    )
    lines = [line.en for line in diagnosis.finding(Cause.HOST_CHANGE).lines]
    expected = (Outcome.FOUND, Cause.HOST_CHANGE, True)
    assert expected == (
        diagnosis.outcome,
        diagnosis.cause,
        lines[0].startswith("the host settled this terminal's batch 000008 on "),
    )


def test_what_the_repairs_left_the_back_office_is_a_warning_without_the_store() -> None:
    """No host store at hand: a batch the repairs settled not balanced is told as exception
    records on the host, a batch set aside as approvals on no host batch — never 'not
    checked', and the outcome is attention."""
    diagnosis = diagnose(evidence(unbalanced_by_repair=((3, "uploaded"), (5, "set_aside"))))
    check = next(c for c in diagnosis.checks if c.key == "host.exceptions")
    expected = (Outcome.ATTENTION, Status.WARNING, True, True)
    assert expected == (
        diagnosis.outcome,
        check.status,
        check.lines[0].en.startswith("the repairs settled batch 000003 without balancing"),
        check.lines[1].en.startswith("the repairs set batch 000005 aside, unsettled"),
    )


def test_an_approval_stamped_before_its_batch_opened_is_not_an_old_batch() -> None:
    """A clock set back three days before today's sale: the approval is stamped 72 h ago, but
    its batch opened 2 h ago — it was sold after the clock went back. Doctor called it an old
    batch and --fix settled the shop's batch mid-day (found by the desk probe with faketime);
    the batch counts from its opening, and a batch really open for days still counts."""
    set_back = diagnose(
        evidence(
            journal=journal(
                oldest_unsettled_at=NOW - timedelta(hours=72),
                batch_opened_at=NOW - timedelta(hours=2),
            )
        )
    )
    really_old = diagnose(
        evidence(
            journal=journal(
                oldest_unsettled_at=NOW - timedelta(hours=72),
                batch_opened_at=NOW - timedelta(hours=80),
            )
        )
    )
    expected = (Verdict.RULED_OUT, (), Cause.STALE_BATCH, (Repair.SETTLE_BATCH,))
    assert expected == (
        set_back.finding(Cause.STALE_BATCH).verdict,
        set_back.repairs,
        really_old.cause,
        really_old.repairs,
    )


def test_the_hosts_first_approval_caps_the_age_of_the_open_batch() -> None:
    """The host recorded the open batch's first approval an hour ago (its clock): a journal
    stamped 3 days back is not an old batch; nothing is settled mid-day."""
    records = _records(
        batches=(
            *_records().batches,
            HostBatch(7, "OPEN", 3, 4500, first_approval_at=NOW - timedelta(hours=1)),
        )
    )
    diagnosis = diagnose(
        evidence(
            journal=journal(oldest_unsettled_at=NOW - timedelta(hours=72)),
            host_records=replace(records, now=NOW),
        )
    )
    assert (Verdict.RULED_OUT, ()) == (
        diagnosis.finding(Cause.STALE_BATCH).verdict,
        diagnosis.repairs,
    )


def test_no_step_for_a_person_says_a_repair_is_already_done() -> None:
    """The steps are shown by a diagnosis that changed nothing: "doctor has taken the host's
    number", "无需操作:已继续完成结算" read to a desk as done when nothing was (found by the
    desk probe); a step that leaves the work to doctor names `posbatch doctor --fix`."""
    claims = [
        (rule.cause, step.en)
        for rule in RULES
        for step in rule.person_steps
        if "doctor has" in step.en
        or step.zh.startswith("无需操作:已")
        or ("doctor" in step.en and "posbatch doctor --fix" not in step.en)
    ]
    assert [] == claims


def test_a_restored_first_batch_backup_says_it_was_restored() -> None:
    """`terminal restore` of a backup taken in the journal's first batch, after more sales:
    the cause stays counters reset (a fresh journal), but the evidence says it was restored
    — not "a reinstall, a reset, or an early copy" (found by the desk probe)."""
    diagnosis = diagnose(
        evidence(
            journal=journal(
                batch_no=1,
                last_stan=4,
                settled_batches=0,
                restored_at=NOW - timedelta(hours=1),
                resync_pending=True,
            ),
            host_view=host_view(batch_no=1, last_closed_batch_no=None, last_stan_in_batch=8),
            host_last_stan_in_journal=False,
        )
    )
    first = diagnosis.finding(Cause.COUNTERS_RESET).lines[0].en
    expected = (Cause.COUNTERS_RESET, True, False)
    assert expected == (
        diagnosis.cause,
        "from a backup taken before the host's last records of this terminal" in first,
        "a reinstall, a reset" in first,
    )
