"""``posbatch demo``: the main job a new user sees (``make demo``).

An embedded host on SQLite and four shops' terminals over real loopback
sockets trade a day in which the four common causes of batch-number errors
(批次号错误) are injected — a typo at manual entry, a terminal fault, the
network, a mismatch after a host-side change — each met, diagnosed by doctor
and resolved on screen; then every batch settles balanced and the report
proves nothing was lost. The day itself lives in :mod:`posbatch.sim._demo`.
"""

from __future__ import annotations

from rich.console import Console

__all__ = ["run_demo"]


def run_demo(console: Console | None = None) -> int:
    """Run the demo day; 0 when every cause was resolved and every check held."""
    from posbatch.sim._demo import run_main_job  # noqa: PLC0415 - keep `posbatch --help` fast

    return run_main_job(console)
