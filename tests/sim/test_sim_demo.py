"""The main job (`posbatch demo`): four causes met, diagnosed and resolved over real sockets."""

from __future__ import annotations

import io

from rich.console import Console

from posbatch.sim._demo import run_main_job


def test_demo_day_resolves_every_cause_and_loses_nothing() -> None:
    """The demo exits 0, meets each cause, settles every batch and the invariants hold."""
    buffer = io.StringIO()
    code = run_main_job(Console(file=buffer, width=120))
    text = buffer.getvalue()
    assert 0 == code, text
    for heading in ("cause 1 — input error", "cause 2 — terminal fault", "cause 3 — network",
                    "cause 4 — mismatch after a host-side change"):  # fmt: skip
        assert heading in text
    expected = (4, 4)  # four causes resolved; four batches balanced in the evening
    assert expected == (text.count("resolved ✔"), text.count("balanced 对账平"))
    assert "NOT resolved" not in text
    assert "DESIGN.md invariants 1–6 hold" in text
