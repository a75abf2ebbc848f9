"""``posbatch host serve --workers N`` as a real process group, for the worker tests.

:class:`Supervised` starts the supervisor, reads its stderr (its own events and
its workers' JSON lines) in a thread, and waits for events with generous
bounds that only limit a failure, never time a success.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from host_helpers import Terminal, read_frame

from posbatch.storage import DATABASE_URL_ENV

SRC = Path(__file__).resolve().parents[2] / "src"
# Bounds for a failure only: a loaded 2-core machine starts a Python process in seconds.
START_TIMEOUT_S = 90.0
EXIT_TIMEOUT_S = 90.0
ANSWER_TIMEOUT_S = 30.0

Event = dict[str, Any]


class Supervised:
    """A running ``posbatch host serve`` and the JSON events it and its workers printed."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.events: list[Event] = []
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                if isinstance(event, dict) and "event" in event:
                    self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(
        self, predicate: Callable[[list[Event]], bool], timeout_s: float = START_TIMEOUT_S
    ) -> list[Event]:
        """The events once ``predicate`` holds for them (AssertionError after the bound)."""
        with self._changed:
            done = self._changed.wait_for(
                lambda: predicate(self.events) or not self._reader.is_alive(), timeout_s
            )
            if not done or not predicate(self.events):
                raise AssertionError("never happened; output:\n" + "".join(self.lines))
            return list(self.events)

    def named(self, name: str) -> list[Event]:
        with self._changed:
            return [event for event in self.events if event["event"] == name]

    def wait_listening(self, workers: int) -> int:
        """Wait until ``workers`` workers listen; the shared port."""
        events = self.wait_for(lambda e: _count(e, "listening") >= workers)
        return int(next(event for event in events if event["event"] == "listening")["port"])

    def live_pids(self) -> set[int]:
        """Worker pids that listen and have not exited (as the events tell)."""
        gone = {event["pid"] for event in self.named("worker_exited")}
        return {event["pid"] for event in self.named("listening")} - gone

    def stop(self) -> int:
        """SIGTERM the supervisor; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(EXIT_TIMEOUT_S)
        self._reader.join(EXIT_TIMEOUT_S)
        return code

    def close(self) -> None:
        """After the process ended: finish reading its output and close the pipe."""
        self._reader.join(EXIT_TIMEOUT_S)
        assert not self._reader.is_alive(), "the output never ended"
        assert self.process.stderr is not None
        self.process.stderr.close()


def _count(events: list[Event], name: str) -> int:
    return sum(1 for event in events if event["event"] == name)


@contextmanager
def supervised(
    data_dir: Path, db_url: str, *, workers: int = 2, extra: Sequence[str] = ()
) -> Iterator[Supervised]:
    """``posbatch host serve --workers N`` on a free port over ``db_url``; killed if left."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop(DATABASE_URL_ENV, None)
    if db_url.startswith("postgresql"):
        env[DATABASE_URL_ENV] = db_url
    command = [sys.executable, "-m", "posbatch", "host", "serve", "--listen", "127.0.0.1:0",
               "--data-dir", str(data_dir), "--workers", str(workers),
               "--log-level", "warning", *extra]  # fmt: skip
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    running = Supervised(process)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()  # the workers notice nothing; kill them too
            for pid in running.live_pids():
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.wait(EXIT_TIMEOUT_S)
        running.close()


def connection_per_request(port: int) -> Callable[[bytes], list[bytes]]:
    """A terminal's sender that opens a new connection for every request."""

    def send(frame: bytes) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT_S) as sock:
            sock.sendall(frame)
            return [read_frame(sock)]

    return send


def new_connection_terminal(port: int, **kwargs: Any) -> Terminal:
    return Terminal(connection_per_request(port), **kwargs)
