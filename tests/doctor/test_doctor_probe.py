"""The echo test doctor diagnoses with (``Terminal.probe_flow``): it borrows its STAN and
writes nothing, so the journal is left exactly as it was."""

from __future__ import annotations

from dataclasses import replace

from doctor_world import World

from posbatch.terminal import run_flow
from posbatch.wire import AdminResponse, EchoRequest, FrameReader, decode_message


def _stan_sent(world: World, offset: int) -> int:
    """The STAN of the echo ``probe_flow(offset)`` would send (the flow is not finished)."""
    flow = world.terminal.probe_flow(offset, 1_000)
    send = next(flow)
    flow.close()
    request = decode_message(FrameReader().feed(send.frame)[0].body)
    assert isinstance(request, EchoRequest)
    return request.stan


def test_probe_writes_nothing_to_the_journal(world: World) -> None:
    """Three echoes answered; the journal's entries, chain head and STAN are unchanged."""
    world.established()
    journal = world.terminal.journal
    before = (journal.last_seq, journal.chain_hash(journal.last_seq), journal.state().stan)
    answers = [run_flow(world.terminal.probe_flow(i, 1_000), world.link) for i in (1, 2, 3)]
    after = (journal.last_seq, journal.chain_hash(journal.last_seq), journal.state().stan)
    expected = (["00", "00", "00"], before)
    assert expected == ([a.response_code for a in answers if isinstance(a, AdminResponse)], after)


def test_probe_borrows_the_next_stans_across_the_wrap(world: World) -> None:
    """Offsets count from the journal's last STAN; 999999 wraps to 000001."""
    terminal = world.terminal
    with terminal.journal.write(world.terminal_clock()) as writer:
        writer.state(replace(terminal.journal.state(), stan=999_998))
    assert [999_999, 1, 2] == [_stan_sent(world, offset) for offset in (1, 2, 3)]


def test_probe_of_an_unanswered_echo_is_none(world: World) -> None:
    """No answer in time: None (a lost echo), and still nothing written."""
    journal = world.terminal.journal
    before = journal.last_seq
    world.link.down = True
    assert (None, before) == (
        run_flow(world.terminal.probe_flow(1, 1_000), world.link),
        journal.last_seq,
    )
