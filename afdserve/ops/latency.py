"""Latency percentiles as every client-side measurement reports them (the split client's live
statistics, the A/B report, the benchmark and the load test)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

LATENCY_PERCENTILE_METHOD = "nearest-rank: the smallest value with at least q% of the sample at or below it"


def _nearest_rank(ordered: Sequence[float], percent: int) -> float:
    # Integer arithmetic: 0.95 * 20 in floats may land just above 19 and pick the wrong rank.
    rank = max(1, -(-percent * len(ordered) // 100))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict:
    """count, p50, p95, p99, mean and max of latencies given in seconds, reported in ms.

    Percentiles are nearest-rank (``LATENCY_PERCENTILE_METHOD``): always an observed latency,
    never an interpolation, so p50 of an even-sized sample is the lower of the middle two. An
    empty sample gives count 0 and None for the rest (None rather than NaN so it writes as JSON).
    """
    ms = sorted(s * 1000.0 for s in seconds)
    if not ms:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    return {
        "count": len(ms),
        "p50": _nearest_rank(ms, 50),
        "p95": _nearest_rank(ms, 95),
        "p99": _nearest_rank(ms, 99),
        "mean": statistics.fmean(ms),
        "max": ms[-1],
    }
