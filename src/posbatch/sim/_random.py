"""One seed, everything derived from it.

A simulation run is a pure function of its seed and its configuration. Every
random choice — the host's working keys and reference numbers, the workload
(amounts, cards, which transaction is voided), the faults and their timing —
draws from a *named stream* derived from that one seed. Streams are
independent of each other: adding a draw to the workload does not shift the
faults, so a seed that showed a violation still shows it after an unrelated
change to another stream's use.

Python's :class:`random.Random` seeded with a ``str`` hashes it with SHA-512
(not the per-process ``hash()``), so the same seed gives the same numbers in
every process and on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["SimRandom"]


class SimRandom:
    """The run's one random source: ``stream(name)`` hands out a derived generator."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._streams: dict[str, random.Random] = {}

    def stream(self, name: str) -> random.Random:
        """The generator for ``name``: the same object every time within one run."""
        generator = self._streams.get(name)
        if generator is None:
            generator = random.Random(f"posbatch.sim:{self.seed}:{name}")
            self._streams[name] = generator
        return generator

    def bytes_source(self, name: str) -> Callable[[int], bytes]:
        """A ``random_bytes(n)`` callable (host keys, RRNs) drawing from stream ``name``."""
        generator = self.stream(name)
        return generator.randbytes
