"""The virtual clock: integer milliseconds, nothing sleeps.

Simulated time only moves when the simulation moves it: a message in flight
takes its latency, a timeout takes the whole timeout, the night between two
trading days takes the night. The host and the terminals read it through a
``datetime`` view; a terminal with a skewed clock reads the same clock plus
its own offset (DESIGN.md's "clock wrong" cause), so skew never disturbs the
order of events.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from posbatch.batch.model import BEIJING

__all__ = ["DAY_MS", "SIM_EPOCH", "VirtualClock"]

# Monday 23 November 2026, midnight in Beijing: day 0 of every run.
SIM_EPOCH: Final = datetime(2026, 11, 23, tzinfo=BEIJING)
DAY_MS: Final = 24 * 60 * 60 * 1000


class VirtualClock:
    """Milliseconds since :data:`SIM_EPOCH`; only :meth:`advance` moves it."""

    def __init__(self, start_ms: int = 0) -> None:
        if start_ms < 0:
            raise ValueError(f"start_ms must be >= 0, got {start_ms}")
        self.now_ms = start_ms

    def advance(self, delta_ms: int) -> None:
        if delta_ms < 0:
            raise ValueError(f"the clock never goes back: advance({delta_ms})")
        self.now_ms += delta_ms

    def advance_to(self, at_ms: int) -> None:
        """Move to ``at_ms`` if that is later; a time already past changes nothing."""
        self.now_ms = max(self.now_ms, at_ms)

    def now(self) -> datetime:
        """The host's view: true simulated time, read in UTC as ``posbatch host serve``
        and the terminal commands read theirs (``datetime.now(UTC)``): code that shows
        a time must convert it to Beijing time itself, and a run shows where it does not."""
        return (SIM_EPOCH + timedelta(milliseconds=self.now_ms)).astimezone(UTC)

    def view(self, skew_ms: Callable[[], int]) -> Callable[[], datetime]:
        """A clock that reads true time plus ``skew_ms()`` (a terminal whose clock is wrong)."""

        def read() -> datetime:
            return (SIM_EPOCH + timedelta(milliseconds=self.now_ms + skew_ms())).astimezone(UTC)

        return read

    def day_of(self, at_ms: int | None = None) -> int:
        """The trading day (0-based) that ``at_ms`` (default: now) falls in."""
        return (self.now_ms if at_ms is None else at_ms) // DAY_MS
