"""Recorded z-stacks: readers, offline scoring and judging, search evaluation through replay."""
