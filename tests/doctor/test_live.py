"""Doctor over a real host and terminal: healthy, and no cause claimed without evidence."""

from __future__ import annotations

from doctor_world import World

from posbatch.doctor import Cause, Outcome, Verdict, examine


def test_healthy_terminal_reports_no_failure(world: World) -> None:
    """Settled days and an open batch in step with the host: healthy, no cause, no repair."""
    world.established()
    report = world.examine()
    expected = (Outcome.HEALTHY, None, ())
    assert expected == (report.diagnosis.outcome, report.diagnosis.cause, report.diagnosis.repairs)


def test_dead_network_names_the_network_and_no_batch_cause(world: World) -> None:
    """Nothing answers: the network is named; batch causes stay 'not checked', not guessed."""
    world.established()
    world.link.down = True
    report = examine(world.site)  # no host store at hand: only the network could tell
    unknown = report.diagnosis.finding(Cause.HOST_CHANGE).verdict
    expected = (Cause.NETWORK_TIMEOUTS, Verdict.NOT_CHECKED)
    assert expected == (report.diagnosis.cause, unknown)


def test_report_after_fix_of_a_healthy_terminal_does_nothing(world: World) -> None:
    """--fix on a healthy terminal repairs nothing and changes no batch."""
    world.established()
    before = world.terminal.current_batch()
    report = world.examine(fix=True)
    expected = ((), before)
    assert expected == (report.repairs_done, world.terminal.current_batch())
