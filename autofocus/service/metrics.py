"""Prometheus metrics in the text exposition format (version 0.0.4), without dependencies.

Counters, gauges and histograms with labels, safe to update from any thread.
`Metrics` holds the daemon's own series; `Metrics.render(extra_gauges)` writes
the text served at `/metrics`. Durations are in seconds (Prometheus
convention).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self._lock = threading.Lock()

    def _key(self, labels: Mapping[str, str] | None) -> LabelValues:
        labels = labels or {}
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} needs labels {self.label_names}, got {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    """A monotonically increasing count."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, labels: Mapping[str, str] | None = None) -> None:
        """Add `amount` (≥ 0) to the series with `labels`."""
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, labels: Mapping[str, str] | None = None) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        if not items and not self.label_names:
            items = [((), 0.0)]
        return self.header() + [
            f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in items
        ]


class Histogram(_Metric):
    """Observations counted into cumulative buckets (upper bounds in the metric's unit)."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        buckets: Iterable[float],
        label_names: Sequence[str] = (),
    ) -> None:
        super().__init__(name, help_text, label_names)
        self.buckets = tuple(sorted(float(b) for b in buckets)) + (math.inf,)
        self._series: dict[LabelValues, list[float]] = {}  # bucket counts..., sum, count

    def observe(self, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Record one observation (NaN is ignored)."""
        if value != value:
            return
        key = self._key(labels)
        with self._lock:
            series = self._series.setdefault(key, [0.0] * (len(self.buckets) + 2))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[i] += 1
            series[-2] += value
            series[-1] += 1

    def count(self, labels: Mapping[str, str] | None = None) -> int:
        with self._lock:
            series = self._series.get(self._key(labels))
            return int(series[-1]) if series else 0

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        lines = self.header()
        for key, series in items:
            for bound, n in zip(self.buckets, series, strict=False):
                le = f'le="{_num(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {_num(n)}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_num(series[-2])}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {_num(series[-1])}")
        return lines


class Metrics:
    """The daemon's metrics.

    - `autofocus_frames_total`: frames acquired by focus jobs;
    - `autofocus_focus_duration_seconds{outcome}`: wall time of finished jobs;
    - `autofocus_scoring_latency_seconds{source}`: one `score()` call
      (`source` = `job` or `upload`);
    - `autofocus_http_requests_total{method,status}`;
    - gauges passed to `render` (jobs by state, queue depth) are computed at scrape time.
    """

    def __init__(self) -> None:
        self.frames_total = Counter("autofocus_frames_total", "Frames acquired by focus jobs.")
        self.jobs_finished_total = Counter(
            "autofocus_jobs_finished_total", "Focus jobs that ended, by state.", ["state"]
        )
        self.focus_duration = Histogram(
            "autofocus_focus_duration_seconds",
            "Wall time of a focus job from start to end, seconds.",
            (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
            ["outcome"],
        )
        self.scoring_latency = Histogram(
            "autofocus_scoring_latency_seconds",
            "Wall time of one batched score() call, seconds.",
            (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            ["source"],
        )
        self.http_requests = Counter(
            "autofocus_http_requests_total", "HTTP requests answered.", ["method", "status"]
        )

    def render(
        self, gauges: Mapping[str, tuple[str, Mapping[LabelValues, float], Sequence[str]]]
    ) -> str:
        """The full exposition text; `gauges` maps name -> (help, {label values: value}, labels)."""
        lines: list[str] = []
        for name, (help_text, values, label_names) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            for key, value in sorted(values.items()):
                lines.append(f"{name}{_labels(label_names, key)} {_num(float(value))}")
        for metric in (
            self.frames_total,
            self.jobs_finished_total,
            self.focus_duration,
            self.scoring_latency,
            self.http_requests,
        ):
            lines += metric.render()
        return "\n".join(lines) + "\n"
