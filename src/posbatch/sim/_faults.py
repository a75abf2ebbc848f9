"""The faults the simulation injects: what each is, how likely, how many happened.

Theory of operation
-------------------
Every fault has an *opportunity* — the moment it may strike — and a
probability per opportunity, drawn from the run's ``faults`` stream:

- per message exchanged on the link (one draw picks at most one link fault):
  request lost, response lost, response delayed past the terminal's timeout,
  duplicate delivery, connection reset mid-frame; and, independently, a
  terminal crash (before the request leaves, or after the host committed but
  before the answer is read) and a host crash/restart;
- per terminal and trading day: reinstall with counters reset (and a new PAN
  key, as a real reinstall makes), a batch number typed by hand with a typo, a
  back-office batch advance on the host, a clock set wrong, a day with no
  settlement (holiday), backup → reinstall → restore (the journal backed up
  with its keys sealed under the merchant's passphrase, the terminal
  reinstalled later that day, the backup restored — now and then after a
  wrong passphrase, which must change nothing), an older copy of the journal
  put back by hand over the newer one, and a support desk running doctor
  (diagnosis only) in the middle of it all;
- opt-in (profile ``second-device``): a second device set up with the terminal's ID (a
  new install, or a copy of its journal) sells beside it for part of the day.

:class:`FaultProfile` holds the probabilities; :class:`FaultCounter` counts
what was injected, by kind, for the closing table.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from posbatch.errors import ConfigError

__all__ = [
    "LINK_FAULTS",
    "PROFILES",
    "FaultCounter",
    "FaultKind",
    "FaultProfile",
    "profile_named",
]


class FaultKind(enum.StrEnum):
    REQUEST_LOST = "request lost"
    RESPONSE_LOST = "response lost"
    RESPONSE_DELAYED = "response delayed past timeout"
    DUPLICATE_DELIVERY = "duplicate delivery"
    CONNECTION_RESET = "connection reset mid-frame"
    HOST_RESTART = "host crash and restart"
    TERMINAL_CRASH = "terminal crash mid-flow"
    TERMINAL_REINSTALL = "terminal reinstalled, counters reset"
    BATCH_TYPO = "batch_no typed with a typo"
    BACK_OFFICE_ADVANCE = "host batch advanced by back office"
    CLOCK_SKEW = "terminal clock wrong"
    HOLIDAY = "day with no settlement"
    BACKUP_RESTORE = "backup, reinstall, restore"
    JOURNAL_COPIED_BACK = "older journal copied back by hand"
    DOCTOR_DIAGNOSIS = "doctor run mid-faults (diagnosis only)"
    # Opt-in (profile "second-device" only; no draw where its probability is 0, so the
    # other profiles' runs and digests are what they were).
    SECOND_DEVICE = "second device under the same terminal ID"


# At most one of these strikes a given exchange; the order is the draw order.
LINK_FAULTS: Final = (
    FaultKind.REQUEST_LOST,
    FaultKind.RESPONSE_LOST,
    FaultKind.RESPONSE_DELAYED,
    FaultKind.DUPLICATE_DELIVERY,
    FaultKind.CONNECTION_RESET,
)


@dataclass(frozen=True, slots=True)
class FaultProfile:
    """Probability of each fault per opportunity (see the module docstring)."""

    name: str
    probability: Mapping[FaultKind, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, value in self.probability.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"probability of {kind} must be in 0..1, got {value}")
        if sum(self.probability.get(kind, 0.0) for kind in LINK_FAULTS) > 1.0:
            raise ConfigError("link fault probabilities add up to more than 1")
        # A private plain copy: frozen by convention, and picklable (``--jobs`` workers).
        object.__setattr__(self, "probability", dict(self.probability))

    def of(self, kind: FaultKind) -> float:
        return self.probability.get(kind, 0.0)

    def strikes(self, kind: FaultKind, generator: random.Random) -> bool:
        """One draw: does ``kind`` strike this opportunity? (No draw when it cannot.)"""
        chance = self.of(kind)
        return chance > 0.0 and generator.random() < chance

    def link_fault(self, generator: random.Random) -> FaultKind | None:
        """At most one link fault for one exchange (one draw whatever the outcome)."""
        draw = generator.random()
        threshold = 0.0
        for kind in LINK_FAULTS:
            threshold += self.of(kind)
            if draw < threshold:
                return kind
        return None


_DEFAULT: Final = {
    FaultKind.REQUEST_LOST: 0.01,
    FaultKind.RESPONSE_LOST: 0.01,
    FaultKind.RESPONSE_DELAYED: 0.005,
    FaultKind.DUPLICATE_DELIVERY: 0.005,
    FaultKind.CONNECTION_RESET: 0.005,
    FaultKind.HOST_RESTART: 0.0005,
    FaultKind.TERMINAL_CRASH: 0.003,
    FaultKind.TERMINAL_REINSTALL: 0.02,
    FaultKind.BATCH_TYPO: 0.05,
    FaultKind.BACK_OFFICE_ADVANCE: 0.03,
    FaultKind.CLOCK_SKEW: 0.05,
    FaultKind.HOLIDAY: 0.05,
    FaultKind.BACKUP_RESTORE: 0.03,
    FaultKind.JOURNAL_COPIED_BACK: 0.05,
    FaultKind.DOCTOR_DIAGNOSIS: 0.1,
}

PROFILES: Final[Mapping[str, FaultProfile]] = MappingProxyType(
    {
        "none": FaultProfile("none"),
        "default": FaultProfile("default", _DEFAULT),
        "heavy": FaultProfile("heavy", {kind: min(1.0, 5 * p) for kind, p in _DEFAULT.items()}),
        "network": FaultProfile(
            "network", {kind: 5 * p for kind, p in _DEFAULT.items() if kind in LINK_FAULTS}
        ),
        # A replacement till or a copied install trading beside the terminal for a while;
        # doctor is then run on the terminal, and the second device settles once and goes.
        "second-device": FaultProfile("second-device", {FaultKind.SECOND_DEVICE: 0.5}),
    }
)


def profile_named(name: str) -> FaultProfile:
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ConfigError(f"unknown fault profile {name!r}: use one of {known}") from None


class FaultCounter:
    """How many faults of each kind were injected."""

    def __init__(self) -> None:
        self.counts: Counter[FaultKind] = Counter()

    def add(self, kind: FaultKind) -> None:
        self.counts[kind] += 1

    def merge(self, other: FaultCounter) -> None:
        self.counts.update(other.counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
