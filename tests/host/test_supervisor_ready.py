"""The supervisor counts a worker as stable only once it said it listens (host.supervisor)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence

import pytest

from posbatch.host import supervisor
from posbatch.host.supervisor import Supervisor

# Each worker of these tests lives this long; "stable" is made shorter than that.
LIFE_S = 0.4
STABLE_MS = 100


def _spawner(code: str) -> object:
    def spawn(command: Sequence[str], ready_fd: int) -> subprocess.Popen[bytes]:
        del command
        return subprocess.Popen([sys.executable, "-c", code, str(ready_fd)], pass_fds=(ready_fd,))

    return spawn


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "WORKER_STABLE_MS", STABLE_MS)
    monkeypatch.setattr(supervisor, "RESTART_BACKOFF_MS", (10, 10, 10, 10))


def test_a_worker_that_dies_before_it_listens_is_never_stable() -> None:
    """Each one lived longer than WORKER_STABLE_MS but never listened: the supervisor gives up
    (it used to count the time from the spawn, and under load restarted such a worker forever)."""
    never_listens = f"import time; time.sleep({LIFE_S}); raise SystemExit(1)"
    spawn = _spawner(never_listens)
    assert 1 == Supervisor(["worker"], 1, spawn=spawn).run()  # type: ignore[arg-type]


def test_a_worker_that_listened_and_served_starts_the_count_again() -> None:
    """A worker that said it listens and served past WORKER_STABLE_MS: each death is its first,
    so the supervisor restarts it and does not give up."""
    listens = (
        "import os, sys, time; fd = int(sys.argv[1]); os.write(fd, b'L'); os.close(fd); "
        f"time.sleep({LIFE_S}); raise SystemExit(1)"
    )
    runner = Supervisor(["worker"], 1, spawn=_spawner(listens))  # type: ignore[arg-type]
    deaths_needed = supervisor.RESTARTS_MAX + 2  # more deaths than giving up would allow
    timer = threading.Timer(LIFE_S * deaths_needed + 1.0, runner._on_signal, (15, None))
    timer.start()
    try:
        code = runner.run()
    finally:
        timer.cancel()
    assert 0 == code
