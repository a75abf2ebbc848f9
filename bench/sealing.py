"""What sealing the keys at rest costs the host's request path, beside a baseline in the same run.

The host core (no sockets) answers pre-built, MACed sales of 200 signed-on
terminals in groups of 64 (one transaction and one commit per group, as the
server does), on a SQLite file with ``synchronous=FULL`` and on SQLite in
memory (no disk: the CPU-bound worst case for any per-request cost). Two
stores run side by side, taking turns group by group:

- **sealed**: the store as it is, every terminal key sealed under the KEK
  (each request opens the terminal's TMK and MAK: two AES-256-GCM decryptions);
- **baseline**: the same store with sealing switched off (seal and open are the
  identity, the keys lie in clear as before issue #12), nothing else changed.

Printed: sales/s of each, and the cost ratio sealed / baseline (CPU time per
sale). Target: ≤ 1.05 in memory. Also the cost of one open, in µs.

Usage: ``PYTHONPATH=src python bench/sealing.py [--rounds 5] [--sales 6400]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from posbatch.host import HostCore, HostStore
from posbatch.host.sealing import KeyEncryptionKey, KeyKind
from posbatch.wire import (
    Frame,
    Header,
    SaleRequest,
    SignOnRequest,
    SignOnResponse,
    Tpdu,
    decode_message,
    encode_frame,
    encode_message,
    unwrap_working_keys,
)

TARGET_RATIO = 1.05
MERCHANT_ID = "898110054110001"
MASTER_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN = "6222021234567890128"
TERMINALS = 200
GROUP = 64
START = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def _frame(message: object, mak: bytes | None) -> bytes:
    return encode_frame(Frame(Tpdu(), Header(), encode_message(message, mak=mak)))  # type: ignore[arg-type]


class _Clear(HostStore):
    """The baseline: sealing off (keys in clear, as before), every other line the same."""

    def seal_key(self, kind: KeyKind, terminal_id: str, clear: bytes) -> bytes:
        return clear

    def open_key(self, kind: KeyKind, terminal_id: str, sealed: bytes) -> bytes:
        return bytes(sealed)


def _setup(store: HostStore, sales: int) -> tuple[HostCore, list[bytes]]:
    """Terminals registered and signed on; ``sales`` MACed sale frames spread over them."""
    core = HostCore(store, clock=_Clock())
    ids = [f"3{index:07d}" for index in range(TERMINALS)]
    store.add_terminals([(MERCHANT_ID, terminal_id, MASTER_KEY) for terminal_id in ids], now=START)
    maks = {}
    for terminal_id in ids:
        (reply,) = core.handle_frames([_frame(SignOnRequest(terminal_id, MERCHANT_ID, 1, 1), None)])
        answer = decode_message(reply.frames[0][13:])
        assert isinstance(answer, SignOnResponse) and answer.working_keys is not None
        maks[terminal_id] = unwrap_working_keys(MASTER_KEY, answer.working_keys).mak
    frames = []
    for index in range(sales):
        terminal_id = ids[index % TERMINALS]
        stan = 2 + index // TERMINALS
        sale = SaleRequest(terminal_id, MERCHANT_ID, stan, 1, 100 + index % 900, PAN)
        frames.append(_frame(sale, maks[terminal_id]))
    return core, frames


def _round(url: str, clear_url: str, sales: int) -> tuple[float, float]:
    """CPU seconds per sale, (sealed, baseline), over one round of ``sales`` each.

    The two stores take turns group by group, so that whatever else the machine
    does at a moment weighs on both alike.
    """
    stores = [
        store_class.open(where, pan_key=b"k" * 32, kek=KeyEncryptionKey.generate())
        for store_class, where in ((HostStore, url), (_Clear, clear_url))
    ]
    try:
        prepared = [_setup(store, sales) for store in stores]
        spent = [0.0, 0.0]
        for start in range(0, sales, GROUP):
            for index, (core, frames) in enumerate(prepared):
                started = time.process_time()
                replies = core.handle_frames(frames[start : start + GROUP])
                spent[index] += time.process_time() - started
                assert all(reply.frames for reply in replies)
        return spent[0] / sales, spent[1] / sales
    finally:
        for store in stores:
            store.close()


def _open_cost_us() -> float:
    kek = KeyEncryptionKey.generate()
    sealed = kek.seal(MASTER_KEY, kind=KeyKind.TMK, terminal_id="10000001")
    count = 100_000
    started = time.process_time()
    for _ in range(count):
        kek.open(sealed, kind=KeyKind.TMK, terminal_id="10000001")
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sales", type=int, default=6_400)
    args = parser.parse_args()
    print(f"one open of a sealed key: {_open_cost_us():.2f} CPU-µs (two per sale: TMK and MAK)")
    ratios = {}
    with tempfile.TemporaryDirectory(prefix="posbatch-sealing-") as tmp:
        for label in ("memory", "file"):
            sealed, clear = [], []
            for number in range(args.rounds):
                url = "sqlite://" if label == "memory" else f"sqlite:///{Path(tmp)}/{number}.db"
                sealed_s, clear_s = _round(url, url.replace(".db", "-clear.db"), args.sales)
                sealed.append(sealed_s)
                clear.append(clear_s)
            sealed_s, clear_s = statistics.median(sealed), statistics.median(clear)
            ratios[label] = sealed_s / clear_s
            print(
                f"[{label}] sealed {1 / sealed_s:,.0f} sales/CPU-s, baseline "
                f"{1 / clear_s:,.0f} sales/CPU-s: ratio sealed / baseline {ratios[label]:.3f} "
                f"(median of {args.rounds} rounds, groups alternating)"
            )
    verdict = "met" if ratios["memory"] <= TARGET_RATIO else "NOT met"
    print(f"target ratio ≤ {TARGET_RATIO} in memory: {verdict}")
    raise SystemExit(0 if ratios["memory"] <= TARGET_RATIO else 1)


if __name__ == "__main__":
    main()
