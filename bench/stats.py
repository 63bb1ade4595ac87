"""Percentiles, the one way every figure of the bench is summarised."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[k])


def summary(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    s = sorted(values)
    if not s:
        return {"n": 0}
    return {
        "n": len(s),
        "p50": percentile(s, 50) * scale,
        "p90": percentile(s, 90) * scale,
        "p99": percentile(s, 99) * scale,
        "p999": percentile(s, 99.9) * scale,
        "max": float(s[-1]) * scale,
        "mean": sum(s) / len(s) * scale,
    }
