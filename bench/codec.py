"""Wire-layer throughput: a sale request/response pair, posbatch.wire against bare pyiso8583.

Each round trip is typed object → ``encode_message`` → bytes → ``decode_message``
→ typed object, for the 0200 sale request and its 0210 answer. The baseline,
measured in the same run, sends the very same field dicts through bare
``iso8583.encode`` / ``iso8583.decode`` with the same spec (a fresh copy of
the dict each time: ``iso8583.encode`` mutates its input, and our layer builds
a fresh dict per message too).

Printed: messages per CPU second for posbatch without MAC (the figure compared
to the target), posbatch with MAC (encode computes field 64, the receiver
checks it), posbatch with its fast path off (``posbatch.wire._codec``
declining everything, so pyiso8583 does all the work, as before that path
existed), bare pyiso8583, the bare fast path on the same dicts, and the cost
ratio ours / bare (total CPU time of ours over total CPU time of bare).
Target: ≤ 1.3. The exit status is 1 above
the target. On a loaded machine the ratio moves by ±0.1 between runs: run it a
few times; ``perf stat -e instructions:u`` gives a load-independent view.

What our layer does on top of pyiso8583, per message: build the field dict
from the typed object (encode) and the typed object from the dict (decode);
check every numeric field holds digits and every text field printable ascii,
on both sides; check MTI and bitmap against the profile before pyiso8583 runs;
the sub-field checks of 60 (60.1/60.2/60.3 fit the MTI), 3, 11 and 2.

Usage: ``PYTHONPATH=src python bench/codec.py [--rounds 600] [--pairs 20]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from unittest import mock

import iso8583

from posbatch.batch.model import Kind
from posbatch.wire import (
    SPEC,
    SaleRequest,
    TransactionResponse,
    _codec,
    check_mac,
    decode_message,
    encode_message,
)

TARGET_RATIO = 1.3
MAK = bytes.fromhex("0123456789ABCDEF")

SALE = SaleRequest(
    terminal_id="10000001",
    merchant_id="898110054110001",
    stan=7,
    batch_no=1,
    amount_fen=1250,
    pan="6222021234567890123",
    expiry="3012",
)
ANSWER = TransactionResponse(
    kind=Kind.SALE,
    terminal_id="10000001",
    merchant_id="898110054110001",
    stan=7,
    batch_no=1,
    response_code="00",
    amount_fen=1250,
    pan="6222021234567890123",
    rrn="000000000007",
    auth_code="123456",
    local_time="101530",
    local_date="1125",
)
PAIR = (SALE, ANSWER)


def posbatch_pair() -> None:
    for message in PAIR:
        decode_message(encode_message(message))


def posbatch_pair_with_mac() -> None:
    for message in PAIR:
        body = encode_message(message, mak=MAK)
        decode_message(body)
        check_mac(body, MAK)


SALE_FIELDS = SALE.to_fields()
ANSWER_FIELDS = ANSWER.to_fields()


def bare_pair() -> None:
    for fields in (SALE_FIELDS, ANSWER_FIELDS):
        body, _ = iso8583.encode(dict(fields), SPEC)
        iso8583.decode(body, SPEC)


def fast_pair() -> None:
    """The same dicts through posbatch.wire._codec's one pass (what pyiso8583 gives, faster)."""
    for fields in (SALE_FIELDS, ANSWER_FIELDS):
        body = _codec.encode(dict(fields))
        assert body is not None
        _codec.decode(bytes(body))


def posbatch_pair_on_pyiso8583() -> None:
    """posbatch.wire with its fast path declining everything: pyiso8583 does all the work."""
    with (
        mock.patch.object(_codec, "encode", _decline),
        mock.patch.object(_codec, "decode", _decline),
    ):
        posbatch_pair()


def _decline(_: object) -> None:
    return None


def check_the_work_is_the_same() -> None:
    """Outside the timing: every path yields what went in, and the bodies agree."""
    for message, fields in ((SALE, SALE_FIELDS), (ANSWER, ANSWER_FIELDS)):
        body = encode_message(message)
        bare_body, _ = iso8583.encode(dict(fields), SPEC)
        assert body == bytes(bare_body)
        assert decode_message(body) == message
        assert iso8583.decode(body, SPEC)[0] == {**fields, "p": body[2:10].hex().upper()}
        assert _codec.decode(body) == iso8583.decode(body, SPEC)[0]
        assert bytes(_codec.encode(dict(fields)) or b"") == body
        with_mac = encode_message(message, mak=MAK)
        check_mac(with_mac, MAK)
        assert decode_message(with_mac) == message


def seconds_per_pair(run: Callable[[], None], pairs: int) -> float:
    """CPU seconds per pair over ``pairs`` runs (CPU time: other processes' load counts less)."""
    start = time.process_time()
    for _ in range(pairs):
        run()
    return (time.process_time() - start) / pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=600, help="interleaved timing rounds")
    parser.add_argument("--pairs", type=int, default=20, help="pairs per variant per round")
    args = parser.parse_args()
    check_the_work_is_the_same()
    variants = {
        "ours": posbatch_pair,
        "ours_mac": posbatch_pair_with_mac,
        "ours_pyiso": posbatch_pair_on_pyiso8583,
        "bare": bare_pair,
        "fast": fast_pair,
    }
    total = dict.fromkeys(variants, 0.0)
    ratios: list[float] = []
    # Short rounds, the variants taking turns, so that a noisy neighbour (2 shared cores)
    # hurts all of them alike; the figures are totals over all rounds.
    for round_number in range(args.rounds):
        order = list(variants.items())
        if round_number % 2:
            order.reverse()
        timing = {name: seconds_per_pair(run, args.pairs) for name, run in order}
        for name, seconds in timing.items():
            total[name] += seconds
        ratios.append(timing["ours"] / timing["bare"])
    ratio = total["ours"] / total["bare"]
    rate = {name: 2 * args.rounds / seconds for name, seconds in total.items()}
    low, median, high = statistics.quantiles(ratios, n=4)
    print("sale 0200 + answer 0210, typed → encode → decode → typed, messages per CPU second")
    print(f"  posbatch.wire, no MAC     {rate['ours']:>10,.0f}")
    print(f"  posbatch.wire, with MAC   {rate['ours_mac']:>10,.0f}")
    print(f"  posbatch.wire, pyiso8583  {rate['ours_pyiso']:>10,.0f}   (the fast path off)")
    print(f"  bare pyiso8583            {rate['bare']:>10,.0f}")
    print(f"  bare fast path (_codec)   {rate['fast']:>10,.0f}   "
          f"({total['bare'] / total['fast']:.1f}× bare pyiso8583)")  # fmt: skip
    print(
        f"  cost ratio ours / bare    {ratio:>10.2f}   (target ≤ {TARGET_RATIO}; per round: "
        f"median {median:.2f}, quartiles {low:.2f}..{high:.2f})"
    )
    print(f"  with MAC / bare           {total['ours_mac'] / total['bare']:>10.2f}")
    print(f"  fast path off / bare      {total['ours_pyiso'] / total['bare']:>10.2f}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
