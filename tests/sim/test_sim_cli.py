"""`posbatch simulate`: the command line over the simulator."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from posbatch.sim import Breakage, SimConfig, profile_named, run_seed
from posbatch.sim.cli import _print_violations, app

runner = CliRunner()


def test_help_has_an_example() -> None:
    """The command's help shows an Example: line."""
    result = runner.invoke(app, ["--help"])
    assert 0 == result.exit_code
    assert "Example: posbatch simulate" in result.output


def test_small_run_prints_the_closing_table() -> None:
    """Two seeds of a small run exit 0 with the closing table and the rates."""
    result = runner.invoke(
        app, ["--terminals", "1", "--days", "1", "--transactions", "2", "--seeds", "2"]
    )
    assert 0 == result.exit_code, result.output
    assert "invariant violations" in result.output
    assert "seeds/s" in result.output


def test_replay_of_a_healthy_seed_says_so() -> None:
    """--replay runs one seed and says the invariants held, with its digest."""
    result = runner.invoke(
        app, ["--terminals", "1", "--days", "1", "--transactions", "2", "--seed", "3", "--replay"]
    )
    assert 0 == result.exit_code, result.output
    assert "digest" in result.output
    assert "invariants 1–6 held after every day" in result.output


def test_unknown_fault_profile_is_refused() -> None:
    """An unknown --faults value is a usage error naming the profiles."""
    result = runner.invoke(app, ["--faults", "chaos"])
    assert 0 != result.exit_code
    assert "default" in result.output


def test_violation_is_printed_with_seed_day_terminal_trace_and_replay() -> None:
    """A failing seed prints seed, day, terminal, the minimal trace and the replay command."""
    config = SimConfig(
        terminals=2,
        days=2,
        transactions=6,
        faults=profile_named("heavy"),
        broken=frozenset({Breakage.SKIP_REVERSAL}),
    )
    result = run_seed(2, config)
    buffer = io.StringIO()
    _print_violations(Console(file=buffer, width=200), result, config, "heavy")
    text = buffer.getvalue()
    first = result.violations[0]
    assert f"VIOLATION seed 2, day {first.day}, terminal {first.terminal_id} (reproduced)" in text
    assert f"stan={first.stan} " in text
    assert "replay: posbatch simulate --seed 2 --replay --terminals 2 --days 2" in text
