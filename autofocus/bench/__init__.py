"""Benchmarks behind `autofocus bench ...`: search strategies on the simulator, scoring speed."""
