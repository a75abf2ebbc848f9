"""Deterministic fault-injection simulation: the whole system in one process, one seed.

A host core and N terminal engines joined by an in-memory link, a virtual
clock, one seeded random source, faults injected everywhere, and DESIGN.md's
invariants 1–6 and 8 checked after every simulated day (see docs/sim.md)::

    from posbatch.sim import SimConfig, run_seed, profile_named

    result = run_seed(7, SimConfig(terminals=10, days=3, faults=profile_named("default")))
    assert result.ok, [violation.render() for violation in result.violations]
    result.digest   # SHA-256 over every frame and the final states: same seed, same digest

``posbatch simulate`` (:mod:`posbatch.sim.cli`) is the command line over it.
"""

from posbatch.sim._checker import INVARIANTS, Violation, check
from posbatch.sim._faults import PROFILES, FaultKind, FaultProfile, profile_named
from posbatch.sim._result import RunTotals, SeedResult
from posbatch.sim._trace import Trace, TraceEvent
from posbatch.sim._world import Breakage, SimConfig, World, replay, run_seed, run_seeds

__all__ = [
    "INVARIANTS",
    "PROFILES",
    "Breakage",
    "FaultKind",
    "FaultProfile",
    "RunTotals",
    "SeedResult",
    "SimConfig",
    "Trace",
    "TraceEvent",
    "Violation",
    "World",
    "check",
    "profile_named",
    "replay",
    "run_seed",
    "run_seeds",
]
