"""Checks of the simulated feature table of helpers_twin.simulate_table (used by the twin tests)."""
from __future__ import annotations

from helpers_twin import simulate_table


def test_simulation_has_both_classes_and_ragged_lengths():
    table, outcomes = simulate_table(patients=14)
    assert 0.15 < (outcomes["grade"] >= 1).mean() < 0.6
    lengths = table.groupby(["patient", "organ"]).size()
    assert set(lengths) == {4, 5}
