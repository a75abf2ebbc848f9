"""One terminal process of the kill probe (tests/host/killprobe.py): trades until killed.

Run as ``python killprobe_terminal.py DATA_DIR SEED INCARNATION``. It opens the terminal kept
in DATA_DIR (the journal `posbatch terminal init` wrote), and drives the real engine over
the real TCP driver: sales, voids, refunds and settlements in an order drawn from
``random.Random(f"{SEED}:{name of DATA_DIR}:{INCARNATION}")``. Every error a cashier would see (host
unreachable, declined, refused) is written as one JSON line on standard output and
trading goes on: the probe kills this process with SIGKILL at a random moment and starts
it again with the next incarnation, so what it proves is read from the journal, never
from this process's memory.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from datetime import UTC, datetime
from pathlib import Path

from posbatch.errors import PosbatchError
from posbatch.terminal import TcpDriver, Terminal, open_terminal
from posbatch.terminal._drivers import parse_address

# Domestic test cards the host approves (the Luhn digit is not checked by the host's rules,
# but these are valid anyway).
CARDS = ("6222021234567890128", "6225881234567898", "6222020200112233446")
ANSWER_TIMEOUT_MS = 1500  # short: a killed host must cost a reversal, not a long wait
PAUSE_AFTER_ERROR_S = 0.05
SALE_SHARE, VOID_SHARE, REFUND_SHARE = 0.72, 0.1, 0.06  # the rest settles


def _now() -> datetime:
    return datetime.now(UTC)


def _say(**fields: object) -> None:
    print(json.dumps({"at": _now().strftime("%H:%M:%S.%f"), **fields}, default=str), flush=True)


def _voidable(terminal: Terminal) -> list[int]:
    batch = terminal.journal.current_batch()
    return [
        row.stan
        for row in terminal.journal.transactions(batch.batch_id)
        if row.kind == "sale" and row.state == "approved" and not row.training
    ]


def _refundable(terminal: Terminal) -> list[tuple[int, int, int]]:
    return [
        (row.stan, row.batch_no, row.amount_fen - row.refunded_fen)
        for row in terminal.journal.transactions()
        if row.kind == "sale" and row.state == "approved" and row.amount_fen > row.refunded_fen
    ]


async def trade(data_dir: Path, draw: random.Random) -> None:
    terminal = open_terminal(data_dir, clock=_now, timeout_ms=ANSWER_TIMEOUT_MS)
    host, port = parse_address(terminal.state().host_address)
    driver = TcpDriver(host, port)
    while True:
        roll = draw.random()
        try:
            if roll < SALE_SHARE:
                amount_fen = draw.randint(1, 50_000)
                result = await driver.run(terminal.sale_flow(amount_fen, draw.choice(CARDS)))
                _say(op="sale", amount_fen=amount_fen, stan=result.stan, state=result.state)
            elif roll < SALE_SHARE + VOID_SHARE:
                stans = _voidable(terminal)
                if stans:
                    stan = draw.choice(stans)
                    result = await driver.run(terminal.void_flow(stan))
                    _say(op="void", of=stan, stan=result.stan, state=result.state)
            elif roll < SALE_SHARE + VOID_SHARE + REFUND_SHARE:
                sales = _refundable(terminal)
                if sales:
                    stan, batch_no, left_fen = draw.choice(sales)
                    amount_fen = draw.randint(1, left_fen)
                    flow = terminal.refund_flow(stan, amount_fen, original_batch_no=batch_no)
                    result = await driver.run(flow)
                    _say(op="refund", of=stan, stan=result.stan, state=result.state)
            else:
                settled = await driver.run(terminal.settle_flow())
                _say(op="settle", batch_no=settled.batch_no, balanced=settled.balanced)
        except PosbatchError as exc:
            _say(op="error", kind=type(exc).__name__, error=str(exc))
            await driver.close()
            await asyncio.sleep(PAUSE_AFTER_ERROR_S)


def main() -> None:
    data_dir, seed, incarnation = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    asyncio.run(trade(data_dir, random.Random(f"{seed}:{data_dir.name}:{incarnation}")))


if __name__ == "__main__":
    main()
