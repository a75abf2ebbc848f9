"""N host processes on one port: start them, restart the ones that die, stop them all.

Theory of operation
-------------------
``posbatch host serve --workers N`` (N > 1) runs this supervisor; with N = 1
there is no supervisor, the one process serves. The supervisor:

1. migrates the store and reserves the address (:func:`reserve_port`: a
   socket bound with SO_REUSEPORT and never listening, so port 0 becomes a
   real port every worker can share and no one else can take between
   restarts) — before any worker starts, so N workers never race to migrate;
2. starts N workers, each the same CLI with ``--worker`` (listen with
   SO_REUSEPORT, check the migrations instead of running them, stop when
   the supervisor dies: :func:`stop_with_parent`); the kernel spreads new
   connections over the listening workers;
3. restarts a worker that exits on its own, after a backoff that grows with
   the deaths in a row of that worker's slot (:func:`restart_delay_ms`; a
   worker that served ``WORKER_STABLE_MS`` after it said it was listening
   starts the count again — one that dies before it listens never does, however
   long a loaded machine took to start it), and gives up — stops the others,
   exits 1 — when one slot died ``RESTARTS_MAX`` times in a row. A worker says
   it listens by writing one byte to the pipe named by ``--ready-fd``;
4. on SIGTERM or SIGINT sends SIGTERM to every worker (each stops
   listening, answers what it has read once it is committed, then exits 0),
   waits at most ``STOP_TIMEOUT_MS``, kills what is left, and exits 0 when
   every worker stopped cleanly.

Workers share nothing but the database: every piece of a terminal's state
(keys, status, batch, STAN, transactions) is read inside the group's
transaction after the terminal is locked (docs/host.md, "Several processes").
One JSON line per event on the ``posbatch.host`` logger.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "RESTARTS_MAX",
    "RESTART_BACKOFF_MS",
    "STOP_TIMEOUT_MS",
    "WORKER_STABLE_MS",
    "Supervisor",
    "reserve_port",
    "restart_delay_ms",
    "say_listening",
    "stop_with_parent",
]

# Wait before restarting a worker after its 1st, 2nd, … death in a row.
RESTART_BACKOFF_MS: Final = (100, 400, 1_600, 3_200)
# Deaths in a row of one worker slot after which the supervisor gives up.
RESTARTS_MAX: Final = len(RESTART_BACKOFF_MS) + 1
# A worker that served this long (from when it said it listens) before dying starts its slot's
# count again.
WORKER_STABLE_MS: Final = 10_000
# A graceful stop waits this long for the workers, then kills the rest.
STOP_TIMEOUT_MS: Final = 30_000
POLL_INTERVAL_MS: Final = 50
PR_SET_PDEATHSIG: Final = 1  # prctl(2)
EXIT_GAVE_UP: Final = 1
EXIT_UNCLEAN_STOP: Final = 1

log = logging.getLogger("posbatch.host")


def restart_delay_ms(deaths_in_a_row: int) -> int | None:
    """How long to wait before restarting after that many deaths in a row (None: give up)."""
    assert deaths_in_a_row >= 1
    if deaths_in_a_row >= RESTARTS_MAX:
        return None
    return RESTART_BACKOFF_MS[deaths_in_a_row - 1]


def stop_with_parent(parent_pid: int) -> bool:
    """In a worker: ask the kernel for SIGTERM when the supervisor dies (Linux).

    A supervisor that is killed (SIGKILL, OOM) cannot stop its workers; this
    way they stop gracefully instead of serving on, orphaned. False when the
    parent is gone already (the caller then stops at once).
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == parent_pid


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT, not listening: the port stays ours.

    It takes no connections (only listening sockets do); workers bind the same
    port with SO_REUSEPORT. OSError if the address is taken by someone else.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reserved = socket.socket(family, socket.SOCK_STREAM)
    try:
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserved.bind((host, port))
    except OSError:
        reserved.close()
        raise
    return reserved


@dataclass(slots=True)
class _Slot:
    """One worker place: its process (None while waiting to restart) and its death count."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    ready_pipe: int | None = None  # read end: the worker writes a byte once it listens
    listening_since: float | None = None
    started: float = 0.0
    deaths_in_a_row: int = 0
    restart_at: float = 0.0

    def poll_ready(self, now: float) -> None:
        """Note when the worker first said it listens (non-blocking)."""
        if self.ready_pipe is None or self.listening_since is not None:
            return
        try:
            said = os.read(self.ready_pipe, 1)
        except BlockingIOError:
            return
        if said:
            self.listening_since = now
        self.close_pipe()  # a byte, or the end of the pipe: nothing more will come

    def close_pipe(self) -> None:
        if self.ready_pipe is not None:
            os.close(self.ready_pipe)
            self.ready_pipe = None


class Supervisor:
    """Runs ``workers`` processes of ``command`` (an argv) until a signal or too many deaths."""

    def __init__(
        self,
        command: Sequence[str],
        workers: int,
        *,
        spawn: Callable[[Sequence[str], int], subprocess.Popen[bytes]] | None = None,
    ) -> None:
        assert workers >= 1
        self._command = list(command)
        self._spawn = spawn if spawn is not None else _spawn_worker
        self._slots = [_Slot(index) for index in range(workers)]
        self._stop_signal: int | None = None

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (exit code 0 if all stopped cleanly) or giving up (1)."""
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            try:
                gave_up = self._supervise()
            except BaseException:
                self._stop_all()  # leave no worker behind
                raise
            stopped = self._stop_all()
            return EXIT_GAVE_UP if gave_up else stopped
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop_signal = signum

    def _supervise(self) -> bool:
        """Start and restart workers until a stop signal (False) or a slot gives up (True)."""
        while not self._stopping():
            now = time.monotonic()
            for slot in self._slots:
                if slot.process is None:
                    if now >= slot.restart_at:
                        self._start(slot, now)
                    continue
                slot.poll_ready(now)
                returncode = slot.process.poll()
                if returncode is None:
                    continue
                if self._stopping():
                    break  # it died of the same signal (Ctrl-C reaches the whole group)
                if not self._died(slot, returncode, now):
                    return True
            time.sleep(POLL_INTERVAL_MS / 1000)
        assert self._stop_signal is not None
        _event("stopping", signal=signal.Signals(self._stop_signal).name)
        return False

    def _stopping(self) -> bool:
        return self._stop_signal is not None  # set by the signal handler at any moment

    def _start(self, slot: _Slot, now: float) -> None:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        try:
            slot.process = self._spawn(self._command, write_end)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)  # the worker holds its own copy
        slot.ready_pipe = read_end
        slot.listening_since = None
        slot.started = now
        _event("worker_started", worker=slot.index, pid=slot.process.pid)

    def _died(self, slot: _Slot, returncode: int, now: float) -> bool:
        """Schedule the slot's restart; False when it died too often in a row."""
        assert slot.process is not None
        pid = slot.process.pid
        slot.process = None
        slot.poll_ready(now)  # it may have said so just before it died
        slot.close_pipe()
        lived_ms = (now - slot.started) * 1000
        served_ms = 0.0 if slot.listening_since is None else (now - slot.listening_since) * 1000
        stable = served_ms >= WORKER_STABLE_MS
        slot.deaths_in_a_row = 1 if stable else slot.deaths_in_a_row + 1
        delay_ms = restart_delay_ms(slot.deaths_in_a_row)
        _event(
            "worker_exited",
            worker=slot.index,
            pid=pid,
            returncode=returncode,
            lived_ms=round(lived_ms),
            listened=slot.listening_since is not None,
            restart_in_ms=delay_ms,
        )
        if delay_ms is None:
            _event("giving_up", worker=slot.index, deaths_in_a_row=slot.deaths_in_a_row)
            return False
        slot.restart_at = now + delay_ms / 1000
        return True

    def _stop_all(self) -> int:
        """SIGTERM every worker, wait for them (then SIGKILL); 0 if every one stopped cleanly."""
        running = [slot for slot in self._slots if slot.process is not None]
        for slot in running:
            assert slot.process is not None
            slot.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_MS / 1000
        clean = True
        for slot in running:
            process = slot.process
            assert process is not None
            try:
                returncode = process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                returncode = process.wait()
            slot.process = None
            # -SIGTERM: it had not yet set up its handler, so it was not serving yet.
            clean = clean and returncode in (0, -signal.SIGTERM)
            _event("worker_stopped", worker=slot.index, pid=process.pid, returncode=returncode)
        return 0 if clean else EXIT_UNCLEAN_STOP


def _spawn_worker(command: Sequence[str], ready_fd: int) -> subprocess.Popen[bytes]:
    """Start ``command --ready-fd N`` with the pipe's write end N inherited."""
    argv = [*command, "--ready-fd", str(ready_fd)]  # our own command line (sys.executable)
    return subprocess.Popen(argv, pass_fds=(ready_fd,))  # noqa: S603


def say_listening(ready_fd: int) -> None:
    """In a worker: tell the supervisor this worker listens (one byte on its pipe)."""
    try:
        os.write(ready_fd, b"L")
        os.close(ready_fd)
    except OSError:  # the supervisor is gone: stop_with_parent handles that
        pass


def _event(name: str, **fields: object) -> None:
    log.warning(json.dumps({"event": name, **fields}))
