"""What every test world shares: the test identities, one clock that steps, counting bytes.

Defined once here (tests/ is on sys.path through its conftest.py); the worlds of
tests/host, tests/terminal, tests/doctor, tests/catalog and tests/clearing import them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

MERCHANT_ID = "898110054110001"
TERMINAL_ID = "10000001"
MASTER_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
START = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


class StepClock:
    """A clock that moves one second per reading; ``skip`` jumps (a day off, a night)."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def skip(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def counting_bytes() -> Callable[[int], bytes]:
    """Deterministic 'random' bytes: the same sequence in every run."""
    counter = itertools.count(1)

    def random_bytes(size: int) -> bytes:
        return bytes((next(counter) * 37 + i) % 256 for i in range(size))

    return random_bytes
