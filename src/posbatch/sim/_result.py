"""What one seeded run produced, and the sum over many runs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from posbatch.sim._checker import Violation
from posbatch.sim._faults import FaultKind

__all__ = ["RunTotals", "SeedResult"]


@dataclass
class SeedResult:
    """Figures of one seed: counts for the closing table, the digest, the violations."""

    seed: int
    days: int
    terminals: int
    digest: str = ""
    frames: int = 0
    operations: Counter[str] = field(default_factory=Counter)  # by operation kind
    outcomes: Counter[str] = field(default_factory=Counter)  # approved / declined / ...
    faults: Counter[FaultKind] = field(default_factory=Counter)
    batch_errors: int = 0  # 77 answers (批次号错误) met by terminals
    resolved: Counter[str] = field(default_factory=Counter)  # automatic / doctor / open
    doctor_runs: Counter[str] = field(default_factory=Counter)  # repaired / not repaired
    batch_error_causes: Counter[str] = field(default_factory=Counter)
    settlements: Counter[str] = field(default_factory=Counter)  # balanced / after upload / ...
    exceptions: Counter[str] = field(default_factory=Counter)  # host exception kinds
    # the workload kinds of issue 11 met: busy days, full batches, edge cards, probes, restores
    workload: Counter[str] = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    # diagnosis-only doctor runs: "when: verdict" (mid-faults, right after a copy-back)
    diagnoses: Counter[str] = field(default_factory=Counter)

    @property
    def transactions(self) -> int:
        """Transactions rung up (sales, voids, refunds, training), whatever their outcome."""
        return sum(self.operations.values())

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass
class RunTotals:
    """The sum of many :class:`SeedResult` (the closing table)."""

    seeds: int = 0
    failed_seeds: list[int] = field(default_factory=list)
    frames: int = 0
    operations: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    faults: Counter[FaultKind] = field(default_factory=Counter)
    batch_errors: int = 0
    resolved: Counter[str] = field(default_factory=Counter)
    doctor_runs: Counter[str] = field(default_factory=Counter)
    batch_error_causes: Counter[str] = field(default_factory=Counter)
    settlements: Counter[str] = field(default_factory=Counter)
    exceptions: Counter[str] = field(default_factory=Counter)
    workload: Counter[str] = field(default_factory=Counter)
    violations: list[tuple[int, Violation]] = field(default_factory=list)
    diagnoses: Counter[str] = field(default_factory=Counter)

    def add(self, result: SeedResult) -> None:
        self.seeds += 1
        if result.violations:
            self.failed_seeds.append(result.seed)
        self.frames += result.frames
        self.operations.update(result.operations)
        self.outcomes.update(result.outcomes)
        self.faults.update(result.faults)
        self.batch_errors += result.batch_errors
        self.resolved.update(result.resolved)
        self.doctor_runs.update(result.doctor_runs)
        self.batch_error_causes.update(result.batch_error_causes)
        self.settlements.update(result.settlements)
        self.exceptions.update(result.exceptions)
        self.workload.update(result.workload)
        self.diagnoses.update(result.diagnoses)
        self.violations.extend((result.seed, violation) for violation in result.violations)

    @property
    def transactions(self) -> int:
        return sum(self.operations.values())
