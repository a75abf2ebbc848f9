"""settle_the_heap: what `posbatch host serve` and `posbatch simulate` do before they run."""

from __future__ import annotations

import gc

from posbatch.cli_support import GC_THRESHOLDS, settle_the_heap


def test_a_long_running_command_freezes_its_heap_and_collects_less_often() -> None:
    """The objects made so far are out of the collector's sight, and its thresholds are
    GC_THRESHOLDS (docs/host.md, "The garbage collector")."""
    thresholds = gc.get_threshold()
    try:
        settle_the_heap()
        assert (gc.get_freeze_count() > 0, gc.get_threshold()) == (True, GC_THRESHOLDS)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
