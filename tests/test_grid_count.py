"""Counting a search grid never builds it: a fine tolerance costs no memory to plan.

The coarse-fine strategy bounds its frames by the size an exhaustive sweep at
2 × tolerance would have; that size used to be read from a grid built for the
purpose (8 GB at tolerance 1e-8 µm over 50 µm). Measured with tracemalloc.
"""

from __future__ import annotations

import tracemalloc

import pytest

from autofocus.search.strategies.base import SearchSpace
from autofocus.search.strategies.registry import available_strategies, make_strategy
from autofocus.search.strategies.sweep import grid, grid_size


@pytest.mark.parametrize("name", ["coarse-fine", "sweep"])
def test_planning_a_fine_search_allocates_nothing_big(name):
    assert name in available_strategies()
    space = SearchSpace(
        center_z_um=0.0,
        range_um=50.0,
        z_min_um=-100,
        z_max_um=100,
        tolerance_um=1e-6,
        max_frames=60,
    )
    tracemalloc.start()
    try:
        strategy = make_strategy(name, space)
        first = list(strategy.ask())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 3 <= len(first) <= 60
    assert peak < 5 * 1024 * 1024, f"{peak / 2**20:.1f} MiB to plan a search"


@pytest.mark.parametrize(
    ("lo", "hi", "step", "cap"),
    [(0, 10, 1, 100), (0, 10, 3, 100), (0, 10, 1, 5), (-5, 5, 0.3, 1000), (0, 1, 5, 10)],
)
def test_grid_size_matches_the_grid(lo, hi, step, cap):
    assert grid_size(lo, hi, step, cap) == grid(lo, hi, step, cap).size


def test_grid_size_of_absurd_steps_is_the_cap():
    assert grid_size(0.0, 50.0, 5e-324, 1 << 30) == 1 << 30
    assert grid_size(0.0, 50.0, 1e-300, 60) == 60
