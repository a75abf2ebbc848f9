"""A well-behaved terminal against a host under hostile peers, beside a quiet baseline.

The host runs as its own process (``python -m posbatch host serve``, default
limits). A real terminal engine (``posbatch.terminal.Terminal`` over a journal
file and ``TcpDriver``, its own 30 s answer timeout) sells from 127.0.0.1, one
sale after another, on a new connection for each sale as most POS terminals do
(短连接; ``--persistent``: one connection kept, which a flood cannot take away
once it is in — the weaker test):

1. **quiet** — nobody else: the baseline latencies, in the same run;
2. **attack** — at the same time, from another process and other loopback
   addresses:
   - ``--silent`` (10,000) silent sockets from 40 addresses (250 each), each
     reconnecting at once whenever the host closes it — a flood that keeps
     trying to hold every slot;
   - ``--slowloris`` (50) peers, each sending a sign-on frame one byte a
     second, reconnecting when cut off;
   - one client sending echo requests as fast as the kernel takes them and
     never reading an answer, reconnecting when cut off;
3. **after** — the attack stopped: latencies again, and whether memory came back.

Printed: sales answered / unanswered within the terminal's timeout and
p50/p99/max latency per phase, the attack's p99 as a ratio to the quiet p99;
the host's RSS quiet, at its peak during the attack (VmHWM) and after, beside
``HOST_RSS_BOUND_MB``; what the attackers got (connections held, refused, cut
and after how long); what the host's limits did (its ``limits`` log lines).

``--src PATH`` runs the host from another source tree (e.g. an export of the
code before the limits) to compare: the terminal and the attackers stay the same.

Usage: ``PYTHONPATH=src python bench/hostile.py [--seconds 60] [--silent 10000]
[--slowloris 50] [--src PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from posbatch.terminal import (
    RESPONSE_TIMEOUT_MS,
    Journal,
    TcpDriver,
    Terminal,
    TerminalSecrets,
)
from posbatch.wire import (
    EchoRequest,
    Frame,
    Header,
    SignOnRequest,
    Tpdu,
    encode_frame,
    encode_message,
)

MERCHANT_ID = "898110054110001"
TERMINAL_ID = "10000001"  # the well-behaved terminal
NON_READER_ID = "10000002"  # the client that never reads (a registered terminal id)
MASTER_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN = "6222021234567890128"
HOST_RSS_BOUND_MB = 300  # the host's memory under every attack at once must stay below this
SILENT_ADDRESSES = 40  # 127.0.2.1 … : 250 sockets each, under the per-address limit
QUIET_SALES = 40
AFTER_SALES = 20
SALE_PAUSE_S = 0.25  # between two sales of the terminal
ATTACK_SETTLE_S = 15.0  # the attack opens its sockets before the terminal sells
START_TIMEOUT_S = 120.0
SLOWLORIS_BYTE_INTERVAL_S = 1.0
NON_READER_CHUNK_FRAMES = 200
RECONNECT_PAUSE_S = 0.05
CONNECT_CONCURRENCY = 500
SRC = Path(__file__).resolve().parents[1] / "src"


def frame_of(message: object, mak: bytes | None = None) -> bytes:
    return encode_frame(Frame(Tpdu(), Header(), encode_message(message, mak=mak)))  # type: ignore[arg-type]


def raise_fd_limit(needed: int) -> int:
    """Raise this process's descriptor limit toward ``needed``; the limit it got."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- the attack (its own process: its loop must not slow the terminal) ---------------------


@dataclass
class AttackStats:
    silent_connected: int = 0
    silent_closed_by_host: int = 0
    silent_connect_failed: int = 0
    silent_open_at_end: int = 0
    silent_held_s: list[float] = field(default_factory=list)
    slowloris_connected: int = 0
    slowloris_cut: int = 0
    slowloris_held_s: list[float] = field(default_factory=list)
    slowloris_bytes: int = 0
    non_reader_connected: int = 0
    non_reader_cut: int = 0
    non_reader_bytes_sent: int = 0
    fd_limit: int = 0


async def _silent(address: str, port: int, stats: AttackStats, stop: asyncio.Event,
                  gate: asyncio.Semaphore) -> None:  # fmt: skip
    while not stop.is_set():
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0)), 10
                )
            except (OSError, TimeoutError):
                stats.silent_connect_failed += 1
                await asyncio.sleep(RECONNECT_PAUSE_S)
                continue
        stats.silent_connected += 1
        opened = time.monotonic()
        read = asyncio.ensure_future(reader.read(1))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if read.done():
            read.exception()  # EOF or a reset: either way the host closed it
            stats.silent_closed_by_host += 1
            stats.silent_held_s.append(time.monotonic() - opened)
        else:
            stats.silent_open_at_end += 1
            read.cancel()
        stopped.cancel()
        writer.close()
        await asyncio.sleep(RECONNECT_PAUSE_S)


async def _slowloris(address: str, port: int, stats: AttackStats, stop: asyncio.Event) -> None:
    frame = frame_of(SignOnRequest(TERMINAL_ID, MERCHANT_ID, 1, 1))
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(address, 0)
            )
        except OSError:
            await asyncio.sleep(RECONNECT_PAUSE_S)
            continue
        stats.slowloris_connected += 1
        opened = time.monotonic()
        cut = False
        index = 0
        while not stop.is_set():
            try:
                writer.write(frame[index % len(frame) : index % len(frame) + 1])
                await writer.drain()
                stats.slowloris_bytes += 1
                index += 1
                if await asyncio.wait_for(reader.read(4096), SLOWLORIS_BYTE_INTERVAL_S) == b"":
                    cut = True
                    break
            except TimeoutError:
                continue
            except OSError:
                cut = True
                break
        if cut:
            stats.slowloris_cut += 1
            stats.slowloris_held_s.append(time.monotonic() - opened)
        writer.close()
        await asyncio.sleep(RECONNECT_PAUSE_S)


async def _non_reader(address: str, port: int, stats: AttackStats, stop: asyncio.Event) -> None:
    chunk = b"".join(
        frame_of(EchoRequest(NON_READER_ID, MERCHANT_ID, stan, 1))
        for stan in range(1, NON_READER_CHUNK_FRAMES + 1)
    )
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((address, 0))
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
        except OSError:
            sock.close()
            await asyncio.sleep(RECONNECT_PAUSE_S)
            continue
        stats.non_reader_connected += 1
        try:
            while not stop.is_set():  # whole chunks only: the stream stays well framed
                send = loop.sock_sendall(sock, chunk)
                stopped = asyncio.ensure_future(stop.wait())
                sent = asyncio.ensure_future(send)
                await asyncio.wait({sent, stopped}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if not sent.done():
                    sent.cancel()
                    break
                sent.result()
                stats.non_reader_bytes_sent += len(chunk)
        except OSError:
            stats.non_reader_cut += 1
        sock.close()
        await asyncio.sleep(RECONNECT_PAUSE_S)


async def attack(port: int, silent: int, slowloris: int, seconds: float) -> AttackStats:
    stats = AttackStats(fd_limit=raise_fd_limit(silent + slowloris + 256))
    usable = max(0, min(silent, stats.fd_limit - slowloris - 128))
    stop = asyncio.Event()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    tasks = [
        asyncio.ensure_future(
            _silent(f"127.0.2.{i % SILENT_ADDRESSES + 1}", port, stats, stop, gate)
        )
        for i in range(usable)
    ]
    tasks += [
        asyncio.ensure_future(_slowloris(f"127.0.3.{i + 1}", port, stats, stop))
        for i in range(slowloris)
    ]
    tasks.append(asyncio.ensure_future(_non_reader("127.0.4.1", port, stats, stop)))
    print(json.dumps({"event": "attacking", "silent": usable, "fd_limit": stats.fd_limit}),
          flush=True)  # fmt: skip
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait(tasks, timeout=15)
    return stats


def run_attack(port: int, silent: int, slowloris: int, seconds: float) -> None:
    stats = asyncio.run(attack(port, silent, slowloris, seconds))
    summary = {key: value for key, value in vars(stats).items() if not isinstance(value, list)}
    for name in ("silent_held_s", "slowloris_held_s"):
        values = getattr(stats, name)
        summary[name + "_median"] = round(statistics.median(values), 1) if values else None
        summary[name + "_max"] = round(max(values), 1) if values else None
    print(json.dumps({"event": "attack_done", **summary}), flush=True)


# --- the host and the terminal ----------------------------------------------------------------


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def host_process(src: Path, data_dir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, PYTHONPATH=str(src))
    env.pop("POSBATCH_DATABASE_URL", None)
    for terminal_id in (TERMINAL_ID, NON_READER_ID):
        command = [
            sys.executable,
            "-m",
            "posbatch",
            "host",
            "add-terminal",
            "--merchant-id",
            MERCHANT_ID,
            "--terminal-id",
            terminal_id,
            "--data-dir",
            str(data_dir),
        ]
        done = subprocess.run(
            [*command, "--master-key-file", "-"], env=env, input=MASTER_KEY.hex().encode(),
            capture_output=True, check=False,
        )  # fmt: skip
        if done.returncode != 0 and b"--master-key-file" in done.stderr + done.stdout:
            # a host tree from before --master-key-file (--src): its --master-key
            command += ["--master-key", MASTER_KEY.hex()]
            done = subprocess.run(command, env=env, capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"add-terminal failed: {(done.stderr or done.stdout).decode()}")
    log = data_dir / "host.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "posbatch", "host", "serve", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(data_dir), "--log-level", "warning"],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while '"listening"' not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the host did not start: " + log.read_text())
            time.sleep(0.05)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Phase:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    unanswered: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)


async def sell(terminal: Terminal, driver: TcpDriver, phase: Phase, *, count: int | None = None,
               until: float | None = None, persistent: bool = False) -> None:  # fmt: skip
    """Sales one after another; each timed from the cashier's press to its outcome
    (connecting included, unless ``persistent``)."""
    sold = 0
    while (count is None or sold < count) and (until is None or time.monotonic() < until):
        started = time.monotonic()
        try:
            result = await driver.run(terminal.sale_flow(100 + sold, PAN, expiry="3012"))
            outcome = result.response_code if result.response_code else "none"
        except Exception as exc:  # HostUnreachable and friends: the sale was not answered
            outcome = type(exc).__name__
        elapsed_ms = (time.monotonic() - started) * 1000
        phase.outcomes[outcome] += 1
        if outcome == "00" and elapsed_ms <= RESPONSE_TIMEOUT_MS:
            phase.latencies_ms.append(elapsed_ms)
        else:
            phase.unanswered += 1
        sold += 1
        if not persistent:
            await driver.close()
        await asyncio.sleep(SALE_PAUSE_S)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def describe(phase: Phase) -> str:
    values = phase.latencies_ms
    return (
        f"{phase.name:<7} sales {sum(phase.outcomes.values()):>4}  answered 00 within "
        f"{RESPONSE_TIMEOUT_MS // 1000} s {len(values):>4}  not {phase.unanswered:>3}  "
        f"p50 {percentile(values, 0.5):7.1f} ms  p99 {percentile(values, 0.99):7.1f} ms  "
        f"max {max(values, default=float('nan')):7.1f} ms  outcomes {dict(phase.outcomes)}"
    )


def limit_events(log: Path) -> dict[str, int]:
    totals: collections.Counter[str] = collections.Counter()
    for line in log.read_text(errors="replace").splitlines():
        if '"limits"' not in line:
            continue
        with contextlib.suppress(ValueError):
            for key, value in json.loads(line).items():
                if key != "event":
                    totals[key] += int(value)
    return dict(sorted(totals.items()))


async def main(args: argparse.Namespace) -> int:
    src = Path(args.src).resolve() if args.src else SRC
    with tempfile.TemporaryDirectory(prefix="posbatch-hostile-") as tmp:
        data_dir = Path(tmp) / "host"
        port = free_port()
        with host_process(src, data_dir, port) as host:
            journal = Journal.open(f"sqlite:///{Path(tmp) / 'journal.db'}")
            clock = lambda: datetime.now(UTC)  # noqa: E731
            Terminal.initialize(journal, merchant_id=MERCHANT_ID, terminal_id=TERMINAL_ID,
                                host_address=f"127.0.0.1:{port}", clock=clock)  # fmt: skip
            terminal = Terminal(journal, TerminalSecrets.create(MASTER_KEY), clock=clock)
            driver = TcpDriver("127.0.0.1", port)
            await driver.run(terminal.sign_on_flow())

            quiet = Phase("quiet")
            await sell(terminal, driver, quiet, count=QUIET_SALES, persistent=args.persistent)
            rss_quiet = rss_mb(host.pid)

            attacker = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).resolve()), "--attack", str(port),
                "--silent", str(args.silent), "--slowloris", str(args.slowloris),
                "--seconds", str(args.seconds + ATTACK_SETTLE_S),
                stdout=asyncio.subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(SRC)),
            )  # fmt: skip
            assert attacker.stdout is not None
            started = json.loads(await attacker.stdout.readline())
            await asyncio.sleep(ATTACK_SETTLE_S)  # the flood reaches its height first
            attack = Phase("attack")
            rss_samples: list[float] = []

            async def sample() -> None:
                while True:
                    rss_samples.append(rss_mb(host.pid))
                    await asyncio.sleep(0.5)

            sampler = asyncio.ensure_future(sample())
            await sell(terminal, driver, attack, until=time.monotonic() + args.seconds,
                       persistent=args.persistent)  # fmt: skip
            sampler.cancel()
            attack_done = json.loads(
                (await attacker.stdout.read()).decode().strip().splitlines()[-1]
            )
            await attacker.wait()
            peak = rss_mb(host.pid, "VmHWM")
            await asyncio.sleep(2.0)
            after = Phase("after")
            await sell(terminal, driver, after, count=AFTER_SALES, persistent=args.persistent)
            rss_after = rss_mb(host.pid)
            await driver.close()
            journal.engine.dispose()
            events = limit_events(data_dir / "host.log")

    mode = "one connection kept" if args.persistent else "a new connection per sale"
    print(f"host: {src} (default limits), terminal: posbatch.terminal over TcpDriver, "
          f"{mode}, timeout {RESPONSE_TIMEOUT_MS} ms; attack {args.seconds:.0f} s after "
          f"{ATTACK_SETTLE_S:.0f} s of build-up")  # fmt: skip
    print(f"attack: {started['silent']} silent sockets from {SILENT_ADDRESSES} addresses, "
          f"{args.slowloris} slowloris peers, 1 non-reading client; attacker fd limit "
          f"{started['fd_limit']}")  # fmt: skip
    for phase in (quiet, attack, after):
        print("  " + describe(phase))
    ratio = percentile(attack.latencies_ms, 0.99) / percentile(quiet.latencies_ms, 0.99)
    print(f"  attack p99 / quiet p99 = {ratio:.2f}")
    print(f"host RSS: quiet {rss_quiet:.1f} MB, peak (VmHWM) {peak:.1f} MB, after {rss_after:.1f} "
          f"MB; bound {HOST_RSS_BOUND_MB} MB: {'kept' if peak < HOST_RSS_BOUND_MB else 'EXCEEDED'}"
          f"; samples during the attack: max {max(rss_samples, default=0):.1f} MB")  # fmt: skip
    print("attackers got: " + json.dumps({k: v for k, v in attack_done.items() if k != "event"}))
    print("host limits acted: " + json.dumps(events))
    every_sale = attack.unanswered == 0 and quiet.unanswered == 0 and after.unanswered == 0
    print(f"every sale answered within the terminal's timeout: {'yes' if every_sale else 'NO'}")
    return 0 if every_sale and peak < HOST_RSS_BOUND_MB else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the attack phase")
    parser.add_argument("--silent", type=int, default=10_000)
    parser.add_argument("--slowloris", type=int, default=50)
    parser.add_argument("--src", help="the host's source tree (default: this checkout's src)")
    parser.add_argument("--persistent", action="store_true", help="keep one connection")
    parser.add_argument("--attack", type=int, help=argparse.SUPPRESS)  # the attacker process
    arguments = parser.parse_args()
    if arguments.attack:
        run_attack(arguments.attack, arguments.silent, arguments.slowloris, arguments.seconds)
        sys.exit(0)
    raise_fd_limit(1024)
    sys.exit(asyncio.run(main(arguments)))
