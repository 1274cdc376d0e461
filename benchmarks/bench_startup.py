"""Start-up time of the `autofocus` command line, as a ratio to a bare interpreter.

Each case runs as a fresh process (`python -m autofocus ...`, so the console-script
shim's own cost is left out and any checkout can be timed), alternated with a bare
`python -c pass` in the same run, so a busy machine slows both alike. Reports the
median wall time per case and its ratio to the bare interpreter's median.

    python benchmarks/bench_startup.py                 # default cases, 15 runs each
    python benchmarks/bench_startup.py --runs 30 --json
    python benchmarks/bench_startup.py --case "focus --help" --case "--version"

The goal for `autofocus --help` is a ratio of at most 8 (issue 12).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any

DEFAULT_CASES = ("--help", "--version", "focus --help", "eval --help")
GOAL_RATIO = 8.0


def _time_once(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} exited {proc.returncode}: "
                         f"{proc.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def run(cases: list[str], runs: int, python: str) -> dict[str, Any]:
    """Median wall seconds of each case and of `python -c pass`, interleaved run by run."""
    env = {**os.environ, "COLUMNS": "80"}
    bare = [python, "-c", "pass"]
    argvs = {case: [python, "-m", "autofocus", *shlex.split(case)] for case in cases}
    for argv in [bare, *argvs.values()]:  # warm the OS file cache and .pyc files
        _time_once(argv, env)
    times: dict[str, list[float]] = {"bare": [], **{c: [] for c in cases}}
    for _ in range(runs):
        times["bare"].append(_time_once(bare, env))
        for case, argv in argvs.items():
            times[case].append(_time_once(argv, env))
    bare_s = statistics.median(times["bare"])
    return {
        "python": python,
        "runs": runs,
        "bare_ms": 1e3 * bare_s,
        "cases": [
            {"command": f"autofocus {case}",
             "median_ms": 1e3 * statistics.median(times[case]),
             "min_ms": 1e3 * min(times[case]),
             "ratio": statistics.median(times[case]) / bare_s}
            for case in cases
        ],
        "goal_ratio": GOAL_RATIO,
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per case (default 15)")
    parser.add_argument("--case", action="append", help="arguments after `autofocus` (repeatable)")
    parser.add_argument("--python", default=sys.executable, help="interpreter to time")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    report = run(list(args.case or DEFAULT_CASES), args.runs, args.python)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"bare `python -c pass`: {report['bare_ms']:.1f} ms (median of {args.runs})")
    print(f"{'command':<28} {'median ms':>10} {'min ms':>8} {'ratio':>7}")
    for c in report["cases"]:
        print(f"{c['command']:<28} {c['median_ms']:>10.1f} {c['min_ms']:>8.1f} {c['ratio']:>6.1f}×")
    print(f"goal for `autofocus --help`: ratio ≤ {GOAL_RATIO:g}; "
          f"1-min load average: {report['load_avg_1min']}")


if __name__ == "__main__":
    main()
