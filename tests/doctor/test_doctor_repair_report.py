"""What ``--fix`` says it did: the repairs table must tell the support desk what changed."""

from __future__ import annotations

from datetime import datetime, timedelta

from doctor_samples import evidence, host_view
from doctor_world import World
from test_causes import counters_reset, damaged_journal

from posbatch.batch.model import BEIJING
from posbatch.doctor import Repair, diagnose

_KEPT_PREFIX = "journal.db.damaged-"


def test_sign_on_repair_says_which_batch_it_settled(world: World) -> None:
    """A reinstall's sign-on settles the host's open batch (the resync): the repair's lines
    name that batch and say its differences became exception records — not only "terminal
    and host agree"."""
    counters_reset(world)
    report = world.examine(fix=True)
    sign_on = next(r for r in report.repairs_done if r.repair == Repair.SIGN_ON_ADOPT)
    said = [line.en for line in sign_on.lines]
    assert any("the sign-on settled batch 000003 first" in text for text in said), said
    assert any("签到时先结算了批次 000003" in line.zh for line in sign_on.lines)


def test_damaged_journal_is_kept_under_a_beijing_time_stamp(world: World) -> None:
    """The damaged journal kept aside is named with Beijing time, like every time doctor
    shows (a UTC stamp reads 8 hours off the report)."""
    damaged_journal(world)
    world.examine(fix=True)
    kept = [p.name for p in world.data_dir.iterdir() if p.name.startswith(_KEPT_PREFIX)]
    assert 1 == len(kept)
    stamp = datetime.strptime(kept[0].removeprefix(_KEPT_PREFIX), "%Y%m%dT%H%M%S")
    now = world.terminal_clock().astimezone(BEIJING).replace(tzinfo=None)
    assert abs(now - stamp) < timedelta(minutes=5), (kept[0], now)


def test_terminal_the_host_does_not_know_says_who_must_act() -> None:
    """A host that answers 97 (terminal not registered) — a wrong host address or terminal
    ID, or a terminal the acquirer never registered — is no cause of the taxonomy, but
    the person's steps say what to check and whom to ask, not only "send the bundle"."""
    unknown = host_view(
        response_code="97", batch_no=None, batch_state=None, last_closed_batch_no=None
    )
    diagnosis = diagnose(evidence(host_view=unknown))
    steps = [line.en for line in diagnosis.person_steps]
    assert any("does not know this terminal (97)" in text for text in steps), steps
    assert any("主机不认识本终端(97)" in line.zh for line in diagnosis.person_steps)
