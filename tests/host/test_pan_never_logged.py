"""A live host over loopback, fed mutated card-carrying frames, logs no card number.

The way it broke (issue #12 §2): the 30 answer's log line repeated the field
the host could not read — a MACed 0320 with one bad nibble in a field-48
record logged the record, a 0200 with one nibble of field 2 changed 18 of its
19 digits. Here ``posbatch host serve`` runs as its own process (as an
acquirer runs it), a terminal signs on, and a mutation fuzzer sends MACed
0200 / 0220 / 0320 / 0400 frames carrying the test PANs with nibbles and bytes
changed — most of them inside the fields that hold the card (2, 35, 48).
Every line the process wrote (stderr and stdout) is then scanned for any 12
consecutive digits of a test PAN.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from host_helpers import MASTER_KEY, MERCHANT_ID, TERMINAL_ID, frame_of, read_frame

from posbatch.batch.model import CardType, Kind
from posbatch.errors import DecodeError
from posbatch.host.issuer import (
    TEST_PAN_APPROVED,
    TEST_PAN_INSUFFICIENT_FUNDS,
    TEST_PAN_NOT_ISSUED,
)
from posbatch.storage import DATABASE_URL_ENV
from posbatch.wire import (
    AdminResponse,
    BatchUploadRequest,
    EchoRequest,
    FrameReader,
    OriginalTransaction,
    RefundRequest,
    ReversalRequest,
    SaleRequest,
    SignOnRequest,
    SignOnResponse,
    UploadRecord,
    VoidRequest,
    decode_message,
    unwrap_working_keys,
)

SRC = Path(__file__).resolve().parents[2] / "src"
PANS = (TEST_PAN_APPROVED, TEST_PAN_INSUFFICIENT_FUNDS, TEST_PAN_NOT_ISSUED)
WINDOW_DIGITS = 12
WINDOWS = frozenset(
    pan[i : i + WINDOW_DIGITS] for pan in PANS for i in range(len(pan) - WINDOW_DIGITS + 1)
)
MUTATIONS = 600  # mutated frames per run
FRAMES_PER_ECHO = 20  # mutated frames sent before an echo marks where their answers end
# Bounds for a failure only (a loaded 2-core machine starts Python in seconds).
START_TIMEOUT_S = 90.0
ANSWER_TIMEOUT_S = 30.0
BODY_START = 2 + 5 + 6  # length prefix, TPDU, header


@dataclass
class LiveHost:
    process: subprocess.Popen[bytes]
    port: int
    output: Path


def _env(db_url: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop(DATABASE_URL_ENV, None)
    if db_url.startswith("postgresql"):
        env[DATABASE_URL_ENV] = db_url
    return env


@pytest.fixture
def live_host(db_url: str, tmp_path: Path) -> Iterator[LiveHost]:
    """``posbatch host serve`` on a free loopback port, everything it writes in one file."""
    data_dir = tmp_path / "data"
    env = _env(db_url)
    registered = subprocess.run(
        [sys.executable, "-m", "posbatch", "host", "add-terminal", "--merchant-id", MERCHANT_ID,
         "--terminal-id", TERMINAL_ID, "--master-key-file", "-", "--data-dir", str(data_dir)],
        env=env, input=MASTER_KEY.hex(), capture_output=True, text=True,
        timeout=START_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert 0 == registered.returncode, registered.stderr
    output = tmp_path / "host-output.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "posbatch", "host", "serve", "--listen", "127.0.0.1:0",
             "--data-dir", str(data_dir), "--log-level", "info"],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield LiveHost(process, _wait_port(process, output), output)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_port(process: subprocess.Popen[bytes], output: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in output.read_text(errors="replace").splitlines():
            if '"listening"' in line:
                return int(json.loads(line)["port"])
        assert process.poll() is None, output.read_text(errors="replace")
        time.sleep(0.05)
    raise AssertionError("the host never listened: " + output.read_text(errors="replace"))


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _sign_on(sock: socket.socket) -> bytes:
    sock.sendall(frame_of(SignOnRequest(TERMINAL_ID, MERCHANT_ID, 1, 1), None))
    answer = decode_message(FrameReader().feed(read_frame(sock))[0].body)
    assert isinstance(answer, SignOnResponse) and answer.working_keys is not None
    assert "00" == answer.response_code
    return unwrap_working_keys(MASTER_KEY, answer.working_keys).mak


def _seeds(mak: bytes) -> list[bytes]:
    ids = (TERMINAL_ID, MERCHANT_ID)
    original = OriginalTransaction(1, 2)
    return [
        frame_of(SaleRequest(*ids, 2, 1, 1250, PANS[0], expiry="3012",
                             track2=PANS[0] + "=3012"), mak),
        frame_of(VoidRequest(*ids, 3, 1, 1250, PANS[1], original), mak),
        frame_of(RefundRequest(*ids, 4, 1, 500, PANS[2], original), mak),
        frame_of(ReversalRequest(*ids, 2, 1, 1250, PANS[0], original_kind=Kind.SALE,
                                 track2=PANS[0] + "=3012"), mak),
        frame_of(BatchUploadRequest(*ids, 5, 1, tuple(
            UploadRecord(CardType.DOMESTIC, 10 + i, PANS[i % 3], 100 + i) for i in range(8)
        )), mak),
    ]  # fmt: skip


def _card_spans(frame: bytes) -> list[tuple[int, int]]:
    """Byte ranges of ``frame`` that hold card digits (field 2, 35 and 48 data)."""
    spans = []
    for pan in PANS:
        # 2 and 35 carry the 19 digits left-aligned (pad nibble last), 48 zero-filled to 20.
        for packed in (bytes.fromhex(pan + "0"), bytes.fromhex("0" + pan)):
            start = frame.find(packed[:9])
            while start != -1:
                spans.append((start, start + len(packed)))
                start = frame.find(packed[:9], start + 1)
    return spans


def _mutate(frame: bytes, rng: random.Random) -> bytes:
    """1..3 changes; two in three inside a card field. The length prefix is kept true."""
    data = bytearray(frame)
    spans = _card_spans(frame)
    for _ in range(rng.randint(1, 3)):
        if spans and rng.random() < 2 / 3:
            low, high = rng.choice(spans)
            index = rng.randrange(low, high)
        else:
            index = rng.randrange(BODY_START, len(data))
        choice = rng.random()
        if choice < 0.6:  # one nibble to a value a digit field must refuse (or any)
            nibble = rng.choice((0xA, 0xB, 0xC, 0xD, 0xE, 0xF, rng.randrange(16)))
            if rng.random() < 0.5:
                data[index] = (data[index] & 0xF0) | nibble
            else:
                data[index] = (data[index] & 0x0F) | (nibble << 4)
        elif choice < 0.8:
            data[index] = rng.randrange(256)
        elif choice < 0.9 and len(data) > BODY_START + 12:
            del data[index]
        else:
            data.insert(index, rng.randrange(256))
    data[:2] = (len(data) - 2).to_bytes(2, "big")
    return bytes(data)


def _send_until_echo(sock: socket.socket, frames: list[bytes], echo_stan: int) -> int:
    """Send ``frames`` then an echo; read answers until the echo's. How many answers came."""
    echo = frame_of(EchoRequest(TERMINAL_ID, MERCHANT_ID, echo_stan, 1), None)
    sock.sendall(b"".join(frames) + echo)
    reader = FrameReader()
    answers = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the echo's answer")
        for frame in reader.feed(chunk):
            answers += 1
            try:
                message = decode_message(frame.body)
            except DecodeError:
                continue  # a 30 answer may lack what the mutated request lacked
            if (
                isinstance(message, AdminResponse)
                and message.kind == Kind.ECHO
                and message.stan == echo_stan
            ):
                return answers


def leaked(text: str) -> list[str]:
    return sorted(window for window in WINDOWS if window in text)


@pytest.mark.slow
def test_live_host_logs_no_card_number_under_mutation_fuzzing(live_host: LiveHost) -> None:
    """Hundreds of mutated MACed frames: 30s are answered and logged, never a card number."""
    rng = random.Random(20261112)
    sock = _connect(live_host.port)
    mak = _sign_on(sock)
    seeds = _seeds(mak)
    sent = answered = 0
    echo_stan = 900_000
    try:
        while sent < MUTATIONS:
            batch = [_mutate(rng.choice(seeds), rng) for _ in range(FRAMES_PER_ECHO)]
            echo_stan += 1
            try:
                answered += _send_until_echo(sock, batch, echo_stan)
            except (ConnectionError, OSError):
                sock.close()  # a mutation the host closes on (e.g. a bad TPDU run): go on
                sock = _connect(live_host.port)
            sent += len(batch)
        # The unmutated frames too (valid requests are logged as well).
        answered += _send_until_echo(sock, seeds, echo_stan + 1)
    finally:
        sock.close()
    live_host.process.send_signal(signal.SIGTERM)
    assert 0 == live_host.process.wait(START_TIMEOUT_S)
    output = live_host.output.read_text(errors="replace")
    lines = output.splitlines()
    format_errors = [line for line in lines if '"response_code":"30"' in line]
    assert len(format_errors) > MUTATIONS // 4, output[-2000:]  # the fuzzer reached the 30 path
    assert answered > MUTATIONS // 2
    assert [] == [(line, leaked(line)) for line in lines if leaked(line)]
