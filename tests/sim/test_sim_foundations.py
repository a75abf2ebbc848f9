"""The simulation's foundations: one seed, a virtual clock, counted faults."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from posbatch.errors import ConfigError
from posbatch.sim._clock import DAY_MS, SIM_EPOCH, VirtualClock
from posbatch.sim._faults import LINK_FAULTS, FaultKind, FaultProfile, profile_named
from posbatch.sim._random import SimRandom
from posbatch.sim._workload import OVER_LIMIT_AMOUNT_FEN, SHOP_SALE_FEN_MAX, draw_amount_fen


def test_same_seed_same_stream() -> None:
    """Two sources with the same seed hand out the same numbers for a stream name."""
    first = SimRandom(7).stream("workload")
    second = SimRandom(7).stream("workload")
    expected = [first.random() for _ in range(5)]
    assert expected == [second.random() for _ in range(5)]


def test_streams_are_independent() -> None:
    """Drawing from one stream does not shift another."""
    untouched = SimRandom(7)
    disturbed = SimRandom(7)
    disturbed.stream("workload").random()
    assert untouched.stream("faults").random() == disturbed.stream("faults").random()


def test_different_seeds_differ() -> None:
    """Seeds 1 and 2 give different streams."""
    assert SimRandom(1).stream("faults").random() != SimRandom(2).stream("faults").random()


def test_clock_view_adds_skew() -> None:
    """A skewed view reads true time plus its offset; the host view reads true time."""
    clock = VirtualClock()
    clock.advance(1_500)
    skewed = clock.view(lambda: -60_000)
    assert SIM_EPOCH + timedelta(milliseconds=1_500) == clock.now()
    assert SIM_EPOCH + timedelta(milliseconds=1_500 - 60_000) == skewed()


def test_clock_never_goes_back() -> None:
    """advance() refuses a negative step; advance_to() ignores a time already past."""
    clock = VirtualClock(DAY_MS)
    clock.advance_to(10)
    expected = DAY_MS
    assert expected == clock.now_ms
    with pytest.raises(ValueError, match="never goes back"):
        clock.advance(-1)


def test_link_fault_draw_follows_probabilities() -> None:
    """With every link fault at 0.2 each kind strikes about a fifth of the exchanges."""
    profile = FaultProfile("even", dict.fromkeys(LINK_FAULTS, 0.2))
    generator = random.Random(3)
    draws = [profile.link_fault(generator) for _ in range(10_000)]
    assert None not in draws
    for kind in LINK_FAULTS:
        assert 1_800 < draws.count(kind) < 2_200


def test_profile_refuses_link_probabilities_over_one() -> None:
    """Link faults are exclusive per exchange, so their probabilities cannot add up past 1."""
    with pytest.raises(ConfigError, match="more than 1"):
        FaultProfile("bad", dict.fromkeys(LINK_FAULTS, 0.3))


def test_unknown_profile_names_the_known_ones() -> None:
    """An unknown --faults value is a ConfigError that lists the profiles."""
    with pytest.raises(ConfigError, match="default"):
        profile_named("chaos")


def test_default_profile_has_every_fault() -> None:
    """The default profile injects every kind of fault the issue lists — all but the
    opt-in second device (profile "second-device"), which would change its digests."""
    profile = profile_named("default")
    expected: list[FaultKind] = [FaultKind.SECOND_DEVICE]
    assert expected == [kind for kind in FaultKind if profile.of(kind) == 0.0]


def test_amounts_are_integer_fen_in_range() -> None:
    """Drawn amounts are ints from 1 fen up to the cap, or the deliberate over-limit amount."""
    generator = random.Random(5)
    amounts = [draw_amount_fen(generator) for _ in range(5_000)]
    assert all(isinstance(amount, int) for amount in amounts)
    assert all(
        1 <= amount <= SHOP_SALE_FEN_MAX or amount == OVER_LIMIT_AMOUNT_FEN for amount in amounts
    )
