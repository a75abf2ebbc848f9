"""Simulation throughput and cost: transactions per second, CPU per transaction, codec share.

Runs ``--seeds`` seeded runs of ``--terminals`` terminals x ``--days`` days x
``--transactions`` transactions (per terminal and day) with the ``--faults``
profile, every invariant checked after every day, and prints:

- seeds per second and simulated transactions per wall second (the figures),
  and the CPU each simulated transaction cost (this process and its workers);
- the same workload with the ``none`` fault profile, measured in the same run
  (the baseline: what the faults and their recovery cost);
- the codec work alone for the very same transactions, measured in the same
  run (issue #15): the seeds run once more keeping their trace (the digest must
  equal the measured run's: same frames), and every ISO 8583 message that
  crossed the simulated line is put through what the two sides did to it —
  encode with field 64 where it had one (the sender), decode and compute the
  MAC again (the receiver); requests as sent and as delivered to the host,
  answers as the host gave them and as the terminal read them. Framing,
  key wrapping and everything else is left out. Timed twice: with the wire
  layer's fast path (``posbatch.wire._codec``, what the simulation itself runs)
  and with it off (``_codec.encode``/``decode`` declining everything, as
  bench/codec.py does, so pyiso8583 does all the work). Printed: the codec's
  CPU per simulated transaction both ways and the ratio simulation / codec
  against each (target ≤ 4). The issue's 4x was written against pyiso8583
  alone (≈ 0.14 ms of codec per transaction at the time, before the fast path
  existed): the "pyiso8583 only" ratio is the one to hold to the target; the
  fast-path ratio is the stricter figure (the same simulation over a cheaper
  codec);
- the projected wall time of the issue's target day — 100 terminals x 300
  transactions with every fault — from the measured rate, against 10 s.

With ``--target`` it also runs that one day for real and prints its wall time
and CPU per transaction. For the codec ratio of the target day itself run
``--seeds 1 --terminals 100 --days 1 --transactions 300``.

Usage: ``python bench/sim.py [--seeds 20] [--terminals 4] [--days 2]
[--transactions 20] [--faults default] [--jobs 1] [--target]``
"""

from __future__ import annotations

import argparse
import hmac
import os
import resource
import time
from dataclasses import dataclass, replace
from unittest import mock

from posbatch.cli_support import settle_the_heap
from posbatch.errors import PosbatchError
from posbatch.sim import SimConfig, World, profile_named, run_seeds
from posbatch.wire import (
    FrameReader,
    Message,
    _codec,
    compute_mac,
    decode_message,
    encode_message,
    has_mac,
)

TARGET_TERMINALS = 100
TARGET_TRANSACTIONS = 300
TARGET_WALL_S = 10.0
TARGET_CODEC_RATIO = 4.0  # simulation CPU per transaction over the codec's, at most
CODEC_REPEATS = 5  # the codec work is timed this many times; the fastest counts
MAK = bytes.fromhex("0123456789ABCDEF")  # any 8 bytes: a MAC costs the same under every key
MAC_BYTES = 8


@dataclass(frozen=True)
class Measured:
    wall_s: float
    cpu_s: float  # this process and the worker processes of --jobs
    transactions: int
    frames: int
    violations: int
    digests: tuple[str, ...]


def cpu_s() -> float:
    """User + system CPU of this process and of its children that ended."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(config: SimConfig, seeds: range, jobs: int = 1) -> Measured:
    """Wall and CPU time, transactions, requests, violations and digests over ``seeds``."""
    started, cpu_started = time.perf_counter(), cpu_s()
    transactions = frames = violations = 0
    digests = []
    for result in run_seeds(seeds, config, jobs=jobs):
        transactions += result.transactions
        frames += result.frames
        violations += len(result.violations)
        digests.append(result.digest)
    return Measured(time.perf_counter() - started, cpu_s() - cpu_started, transactions, frames,
                    violations, tuple(digests))  # fmt: skip


# --- the codec work of the same transactions ---

# Trace event kinds (the values of posbatch.sim's EventKind, a StrEnum): who encoded a frame
# — the terminal (sent) or the host (answered) — and who decoded it — the host (delivered)
# or the terminal (received).
_SENDER = (">>", "<-")
_RECEIVER = ("->", "<<")


@dataclass(frozen=True)
class CodecWork:
    encodes: list[tuple[Message, bool]]  # (message, with field 64)
    decodes: list[tuple[bytes, bool]]  # (body, with field 64)
    unreadable: int  # frames that were not one whole decodable message (cut, garbage)


def codec_work(config: SimConfig, seeds: range) -> tuple[CodecWork, tuple[str, ...]]:
    """Every message that crossed the line in ``seeds``, as sender and receiver handled it."""
    encodes: list[tuple[Message, bool]] = []
    decodes: list[tuple[bytes, bool]] = []
    unreadable = 0
    digests = []
    for seed in seeds:
        world = World(seed, replace(config, keep_trace=True))
        try:
            digests.append(world.run().digest)
            if world.trace.dropped:
                raise RuntimeError("the trace dropped events: run fewer transactions per seed")
            for node in world.nodes:
                for event in world.trace.events_of(node.terminal_id):
                    if event.kind not in _SENDER and event.kind not in _RECEIVER:
                        continue
                    try:
                        frames = FrameReader().feed(event.frame)
                        body = frames[0].body if len(frames) == 1 else b""
                        message = decode_message(body)
                    except (PosbatchError, ValueError):  # cut short, or not a message
                        unreadable += 1
                        continue
                    mac = has_mac(body)
                    if event.kind in _SENDER:
                        encodes.append((message, mac))
                    else:
                        decodes.append((body, mac))
        finally:
            world.close()
    return CodecWork(encodes, decodes, unreadable), tuple(digests)


def codec_seconds(work: CodecWork) -> float:
    """CPU seconds of encoding (and MACing) and decoding (and MACing) everything once."""
    best = float("inf")
    for _ in range(CODEC_REPEATS):
        started = time.process_time()
        for message, mac in work.encodes:
            encode_message(message, mak=MAK if mac else None)
        for body, mac in work.decodes:
            decode_message(body)
            if mac:
                hmac.compare_digest(compute_mac(MAK, body[:-MAC_BYTES]), body[-MAC_BYTES:])
        best = min(best, time.process_time() - started)
    return best


def _decline(*_args: object) -> None:
    return None  # "not the plain case": posbatch.wire falls back to pyiso8583


def codec_seconds_pyiso8583(work: CodecWork) -> float:
    """:func:`codec_seconds` with the wire layer's fast path off: pyiso8583 does it all."""
    with (
        mock.patch.object(_codec, "encode", _decline),
        mock.patch.object(_codec, "decode", _decline),
    ):
        return codec_seconds(work)


def report(label: str, seeds: int, measured: Measured) -> float:
    wall_s = measured.wall_s
    rate = measured.transactions / wall_s
    cpu_ms = measured.cpu_s / measured.transactions * 1000 if measured.transactions else 0.0
    print(
        f"{label:<22} {seeds / wall_s:8.3f} seeds/s  {rate:10.1f} transactions/s  "
        f"{measured.frames / wall_s:10.1f} requests/s  {cpu_ms:6.3f} ms CPU/transaction  "
        f"violations {measured.violations}"
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
        f"{options.transactions} transactions, faults {options.faults!r}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    settle_the_heap()  # as `posbatch simulate` does before its seeds
    measured = measure(config, seeds, options.jobs)
    rate = report(f"faults {options.faults!r}", options.seeds, measured)
    quiet = SimConfig(
        terminals=options.terminals,
        days=options.days,
        transactions=options.transactions,
        faults=profile_named("none"),
        keep_trace=False,
    )
    base_rate = report("baseline: no faults", options.seeds, measure(quiet, seeds, options.jobs))
    print(f"cost of faults and recovery: {base_rate / rate:.2f}x the fault-free rate")
    work, digests = codec_work(config, seeds)
    if digests != measured.digests:
        raise RuntimeError("the traced run differs from the measured one (digests)")
    codec_ms = codec_seconds(work) / measured.transactions * 1000
    plain_ms = codec_seconds_pyiso8583(work) / measured.transactions * 1000
    sim_ms = measured.cpu_s / measured.transactions * 1000
    print(
        f"codec alone, same transactions: {codec_ms:.3f} ms CPU/transaction with the fast "
        f"path, {plain_ms:.3f} ms with pyiso8583 only ({len(work.encodes):,} encodes, "
        f"{len(work.decodes):,} decodes, {work.unreadable:,} frames cut or unreadable left "
        f"out; best of {CODEC_REPEATS})"
    )
    print(
        f"simulation / codec (pyiso8583 only, the issue's baseline): {sim_ms:.3f} / "
        f"{plain_ms:.3f} ms = {sim_ms / plain_ms:.1f}x (target ≤ {TARGET_CODEC_RATIO:.0f}x)"
    )
    print(
        f"simulation / codec (fast path, as the simulation runs it): {sim_ms:.3f} / "
        f"{codec_ms:.3f} ms = {sim_ms / codec_ms:.1f}x"
    )
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
        day = measure(target, range(1, 2))
        report("target day, measured", 1, day)
        print(f"target day wall time {day.wall_s:.1f} s vs {TARGET_WALL_S:.0f} s "
              f"({day.cpu_s:.1f} s CPU)")  # fmt: skip


if __name__ == "__main__":
    main()
