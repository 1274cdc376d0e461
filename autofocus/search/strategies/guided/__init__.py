"""The `guided` strategy, the default: few frames, guided by the scorer and the optics.

The algorithm is documented with the class, in `strategy.py`. Its parts, one
job each: `samples` (the frames measured so far), `shape` (the refined-candidate
record and peak-shape helpers), `peak` (the fine peak fit), `refine` (capture
bisection and the fine bracket), `rivals` (the look for a second plane),
`verdict` (success or why not), `estimate` and `capture` (the two paths).
"""

from autofocus.search.strategies.guided.shape import coarse_step_um, log_parabola
from autofocus.search.strategies.guided.strategy import Guided

__all__ = ["Guided", "coarse_step_um", "log_parabola"]
