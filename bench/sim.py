"""Simulation throughput: seeds per second and simulated transactions per wall second.

Runs ``--seeds`` seeded runs of ``--terminals`` terminals x ``--days`` days x
``--transactions`` transactions (per terminal and day) with the ``--faults``
profile, every invariant checked after every day, and prints:

- seeds per second and simulated transactions per wall second (the figures);
- the same workload with the ``none`` fault profile, measured in the same run
  (the baseline: what the faults and their recovery cost);
- the projected wall time of the issue's target day — 100 terminals x 300
  transactions with every fault — from the measured rate, against 10 s.

With ``--target`` it also runs that one day for real and prints its wall time.

Usage: ``python bench/sim.py [--seeds 20] [--terminals 4] [--days 2]
[--transactions 20] [--faults default] [--jobs 1] [--target]``
"""

from __future__ import annotations

import argparse
import time

from posbatch.sim import SimConfig, profile_named, run_seeds

TARGET_TERMINALS = 100
TARGET_TRANSACTIONS = 300
TARGET_WALL_S = 10.0


def measure(config: SimConfig, seeds: range, jobs: int = 1) -> tuple[float, int, int, int]:
    """(wall seconds, transactions, requests, violations) over ``seeds``."""
    started = time.perf_counter()
    transactions = frames = violations = 0
    for result in run_seeds(seeds, config, jobs=jobs):
        transactions += result.transactions
        frames += result.frames
        violations += len(result.violations)
    return time.perf_counter() - started, transactions, frames, violations


def report(
    label: str, wall_s: float, seeds: int, transactions: int, frames: int, bad: int
) -> float:
    rate = transactions / wall_s
    print(
        f"{label:<22} {seeds / wall_s:8.3f} seeds/s  {rate:10.1f} transactions/s  "
        f"{frames / wall_s:10.1f} requests/s  violations {bad}"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--terminals", type=int, default=4)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--transactions", type=int, default=20)
    parser.add_argument("--faults", default="default")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--target", action="store_true", help="also run the target day for real")
    options = parser.parse_args()
    seeds = range(options.first_seed, options.first_seed + options.seeds)
    config = SimConfig(
        terminals=options.terminals,
        days=options.days,
        transactions=options.transactions,
        faults=profile_named(options.faults),
        keep_trace=False,
    )
    print(
        f"{options.seeds} seeds x {options.terminals} terminals x {options.days} days x "
        f"{options.transactions} transactions, faults {options.faults!r}"
    )
    wall_s, transactions, frames, bad = measure(config, seeds, options.jobs)
    rate = report(f"faults {options.faults!r}", wall_s, options.seeds, transactions, frames, bad)
    quiet = SimConfig(
        terminals=options.terminals,
        days=options.days,
        transactions=options.transactions,
        faults=profile_named("none"),
        keep_trace=False,
    )
    base_wall_s, base_tx, base_frames, base_bad = measure(quiet, seeds, options.jobs)
    base_rate = report("baseline: no faults", base_wall_s, options.seeds, base_tx, base_frames,
                       base_bad)  # fmt: skip
    print(f"cost of faults and recovery: {base_rate / rate:.2f}x the fault-free rate")
    target_transactions = TARGET_TERMINALS * TARGET_TRANSACTIONS
    projected_s = target_transactions / rate
    print(
        f"target day ({TARGET_TERMINALS} terminals x {TARGET_TRANSACTIONS} transactions, "
        f"all faults): projected {projected_s:.1f} s wall vs {TARGET_WALL_S:.0f} s "
        f"(ratio {projected_s / TARGET_WALL_S:.2f})"
    )
    if options.target:
        target = SimConfig(
            terminals=TARGET_TERMINALS,
            days=1,
            transactions=TARGET_TRANSACTIONS,
            faults=profile_named(options.faults),
            keep_trace=False,
        )
        wall_s, transactions, frames, bad = measure(target, range(1, 2))
        report("target day, measured", wall_s, 1, transactions, frames, bad)
        print(f"target day wall time {wall_s:.1f} s vs {TARGET_WALL_S:.0f} s")


if __name__ == "__main__":
    main()
