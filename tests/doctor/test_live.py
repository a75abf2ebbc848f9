"""Doctor over a real host and terminal: healthy, and no cause claimed without evidence."""

from __future__ import annotations

from doctor_world import World

from posbatch.doctor import Outcome


def test_healthy_terminal_reports_no_failure(world: World) -> None:
    """Settled days and an open batch in step with the host: healthy, no cause, no repair."""
    world.established()
    report = world.examine()
    expected = (Outcome.HEALTHY, None, ())
    assert expected == (report.diagnosis.outcome, report.diagnosis.cause, report.diagnosis.repairs)
