"""A/B statistics (afdserve.evaluation.ab_stats): hand-computed values, scipy where it is installed, edge
cases, and the coverage of the paired interval by exact enumeration of small tables."""

from __future__ import annotations

import math

import pytest

from afdserve.evaluation import ab_stats as ab
from afdserve.ops.latency import latency_summary

Z95 = 1.959963984540054


def paired(both: int, b: int, c: int, neither: int) -> tuple[list[bool], list[bool]]:
    """Per-image correctness of A and B for a paired 2x2 table (b: A only right, c: B only)."""
    a = [True] * both + [True] * b + [False] * c + [False] * neither
    b_ = [True] * both + [False] * b + [True] * c + [False] * neither
    return a, b_


# -- Wilson ----------------------------------------------------------------------------------


def test_wilson_by_hand():
    # 8 of 10: centre (0.8 + z^2/20) / (1 + z^2/10), half z/(1 + z^2/10) sqrt(0.016 + z^2/400)
    z2 = Z95**2
    centre = (0.8 + z2 / 20) / (1 + z2 / 10)
    half = Z95 / (1 + z2 / 10) * math.sqrt(0.8 * 0.2 / 10 + z2 / 400)
    low, high = ab.wilson_interval(8, 10)
    assert low == pytest.approx(centre - half, abs=1e-12)
    assert high == pytest.approx(centre + half, abs=1e-12)
    assert (low, high) == pytest.approx((0.4901625, 0.9433178), abs=1e-6)  # textbook figures


def test_wilson_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n, conf in [(0, 20, 0.95), (1, 20, 0.95), (81, 263, 0.95), (9_871, 10_000, 0.99), (50, 50, 0.9),
                       (7_612, 10_000, 0.95)]:
        ref = stats.binomtest(k, n).proportion_ci(confidence_level=conf, method="wilson")
        assert ab.wilson_interval(k, n, conf) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_wilson_edges():
    assert ab.wilson_interval(0, 0) == (0.0, 1.0)
    low, high = ab.wilson_interval(0, 25)
    assert low == 0.0 and 0.0 < high < 0.2
    low, high = ab.wilson_interval(25, 25)
    assert high == 1.0 and 0.8 < low < 1.0
    # Higher confidence, wider interval.
    assert ab.wilson_interval(30, 100, 0.99)[0] < ab.wilson_interval(30, 100, 0.95)[0]
    for bad in [(5, 4), (-1, 4), (1, -1)]:
        with pytest.raises(ValueError):
            ab.wilson_interval(*bad)
    with pytest.raises(ValueError):
        ab.wilson_interval(1, 4, confidence=1.0)


# -- McNemar ---------------------------------------------------------------------------------


def test_mcnemar_by_hand():
    # b=0, c=5: 2 * (1/2)^5 = 1/16.
    assert ab.mcnemar_exact(0, 5) == pytest.approx(1 / 16, rel=1e-12)
    # b=3, c=10: 2 * (C(13,0)+C(13,1)+C(13,2)+C(13,3)) / 2^13 = 2 * 378 / 8192.
    assert ab.mcnemar_exact(3, 10) == pytest.approx(2 * 378 / 8192, rel=1e-12)
    # Symmetric in b and c.
    assert ab.mcnemar_exact(10, 3) == ab.mcnemar_exact(3, 10)


def test_mcnemar_edges():
    assert ab.mcnemar_exact(0, 0) == 1.0  # no discordant pairs: no evidence
    assert ab.mcnemar_exact(7, 7) == 1.0
    assert ab.mcnemar_exact(0, 1) == 1.0  # 2 * 1/2, capped
    assert ab.mcnemar_exact(4, 5) == 1.0  # 2 * P(X <= 4 | 9) = 1, capped
    assert ab.mcnemar_exact(0, 1_000) == 2.0**-999  # tiny but not rounded away
    assert ab.mcnemar_exact(2_400, 2_401) == 1.0  # exact sum: no 0.99999... below the cap
    assert ab.mcnemar_exact(60_000, 60_001) == 1.0
    with pytest.raises(ValueError):
        ab.mcnemar_exact(-1, 3)


def test_mcnemar_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(3, 10), (0, 5), (1, 1), (12, 30), (50, 70), (2_000, 2_150), (20_000, 20_500), (6, 0)]:
        ref = stats.binomtest(min(b, c), b + c, 0.5).pvalue
        assert ab.mcnemar_exact(b, c) == pytest.approx(ref, rel=1e-9, abs=1e-300)
        # The same from the binomial distribution function: 2 * cdf(min), capped at 1.
        assert ab.mcnemar_exact(b, c) == pytest.approx(min(1.0, 2 * stats.binom.cdf(min(b, c), b + c, 0.5)),
                                                       rel=1e-9)


# -- paired difference -----------------------------------------------------------------------


def test_paired_difference_counts_and_direction():
    a, b = paired(both=70, b=4, c=10, neither=16)  # n = 100
    result = ab.paired_difference(a, b)
    assert result["n"] == 100
    assert result["top1_a"] == pytest.approx(0.74)
    assert result["top1_b"] == pytest.approx(0.80)
    assert result["diff"] == pytest.approx(0.06)  # B - A
    assert (result["b"], result["c"]) == (4, 10)
    assert result["mcnemar_p"] == pytest.approx(ab.mcnemar_exact(4, 10))
    assert result["ci_low"] < result["diff"] < result["ci_high"]
    # Order of the images does not matter, only the table.
    order = sorted(range(100), key=lambda i: (i * 37) % 100)
    shuffled = ab.paired_difference([a[i] for i in order], [b[i] for i in order])
    assert shuffled == result


def test_newcombe_by_hand():
    # Table both=14, A only=0, B only=5, neither=22 (n=41): p_B = 19/41, p_A = 14/41.
    n = 41
    p1, p2 = 19 / n, 14 / n
    l1, u1 = ab.wilson_interval(19, n)
    l2, u2 = ab.wilson_interval(14, n)
    # phi = (14*22 - 5*0) / sqrt(19 * 22 * 14 * 27)
    phi = 308 / math.sqrt(19 * 22 * 14 * 27)
    low = (p1 - p2) - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = (p1 - p2) + math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    assert ab.newcombe_paired_interval(14, 0, 5, 22) == pytest.approx((low, high), abs=1e-12)
    assert (low, high) == pytest.approx((0.02221, 0.21678), abs=1e-5)
    a, b = paired(14, 0, 5, 22)
    result = ab.paired_difference(a, b)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((low, high), abs=1e-12)


def test_newcombe_swapping_versions_negates_the_interval():
    for table in [(70, 4, 10, 16), (14, 0, 5, 22), (3, 9, 1, 0), (500, 37, 51, 412)]:
        both, b, c, neither = table
        low, high = ab.newcombe_paired_interval(both, b, c, neither)
        swapped = ab.newcombe_paired_interval(both, c, b, neither)
        assert swapped == pytest.approx((-high, -low), abs=1e-12)


def test_newcombe_approaches_paired_wald_for_large_n():
    both, b, c, neither = 76_000, 1_900, 2_300, 19_800
    n = both + b + c + neither
    diff = (c - b) / n
    se = math.sqrt((b + c) / n - diff**2) / math.sqrt(n)
    low, high = ab.newcombe_paired_interval(both, b, c, neither)
    assert low == pytest.approx(diff - Z95 * se, abs=2e-4)
    assert high == pytest.approx(diff + Z95 * se, abs=2e-4)


def test_newcombe_coverage_by_exact_enumeration():
    # Every table of n=25 images weighted by its multinomial probability: the 95% interval
    # should hold the true difference about 95% of the time (Newcombe reports ~0.95 on average).
    n = 25
    for cells in [(0.70, 0.10, 0.05, 0.15), (0.50, 0.20, 0.10, 0.20)]:
        true_diff = cells[2] - cells[1]
        covered = 0.0
        log_cells = [math.log(p) for p in cells]
        for both in range(n + 1):
            for b in range(n + 1 - both):
                for c in range(n + 1 - both - b):
                    d = n - both - b - c
                    counts = (both, b, c, d)
                    log_p = math.lgamma(n + 1) + sum(k * lp - math.lgamma(k + 1) for k, lp in zip(counts, log_cells))
                    low, high = ab.newcombe_paired_interval(*counts)
                    if low <= true_diff <= high:
                        covered += math.exp(log_p)
        assert 0.92 < covered < 0.985, (cells, covered)


def test_paired_difference_edges():
    empty = ab.paired_difference([], [])
    assert empty["n"] == 0 and math.isnan(empty["diff"]) and math.isnan(empty["top1_a"])
    assert (empty["ci_low"], empty["ci_high"]) == (-1.0, 1.0)
    assert empty["mcnemar_p"] == 1.0
    # Identical results: no discordant pairs, diff 0, p 1, and an interval around 0 that has
    # not collapsed to a point (the paired Wald interval would).
    same = [True, False, True, True] * 25
    result = ab.paired_difference(same, same)
    assert (result["b"], result["c"], result["diff"], result["mcnemar_p"]) == (0, 0, 0.0, 1.0)
    assert result["ci_low"] < 0.0 < result["ci_high"]
    # All right / all wrong for both: phi falls back to 0 (empty margins), still a valid interval.
    for value in (True, False):
        result = ab.paired_difference([value] * 30, [value] * 30)
        assert -1.0 <= result["ci_low"] < 0.0 < result["ci_high"] <= 1.0
    # B right everywhere, A wrong everywhere: the interval stays inside [-1, 1].
    result = ab.paired_difference([False] * 10, [True] * 10)
    assert result["diff"] == 1.0 and result["ci_high"] == 1.0 and 0.0 < result["ci_low"] < 1.0
    with pytest.raises(ValueError):
        ab.paired_difference([True], [True, False])


# -- non-inferiority -------------------------------------------------------------------------


def test_noninferiority_bound_is_the_one_sided_newcombe_limit():
    a, b = paired(both=850, b=30, c=25, neither=95)  # n=1000: B is 0.5 points below A
    result = ab.noninferiority(a, b, margin=0.03, alpha=0.05)
    low_90, _ = ab.newcombe_paired_interval(850, 30, 25, 95, confidence=0.90)
    assert result["upper_bound"] == pytest.approx(-low_90, abs=1e-12)
    assert result["diff_a_minus_b"] == pytest.approx(0.005)
    assert result["diff_a_minus_b"] < result["upper_bound"]
    assert result["passed"] is True  # bound ~0.016 < 3 points
    strict = ab.noninferiority(a, b, margin=0.01, alpha=0.05)
    assert strict["upper_bound"] == pytest.approx(result["upper_bound"])
    assert strict["passed"] is False  # bound ~0.016 >= 1 point
    # Smaller alpha, higher bound.
    assert ab.noninferiority(a, b, margin=0.03, alpha=0.01)["upper_bound"] > result["upper_bound"]


def test_noninferiority_large_n_matches_normal_approximation():
    both, b, c, neither = 40_000, 1_000, 950, 8_050
    n = both + b + c + neither
    a, b_ = paired(both, b, c, neither)
    result = ab.noninferiority(a, b_, margin=0.01, alpha=0.05)
    diff = (b - c) / n
    se = math.sqrt((b + c) / n - diff**2) / math.sqrt(n)
    assert result["upper_bound"] == pytest.approx(diff + 1.6448536269514722 * se, abs=1e-4)
    assert result["passed"] is True


def test_noninferiority_edges():
    empty = ab.noninferiority([], [])
    assert empty["n"] == 0 and empty["upper_bound"] == 1.0 and empty["passed"] is False
    # B identical to A on plenty of images passes a 1-point margin; on a handful it does not.
    same = [True] * 900 + [False] * 100
    assert ab.noninferiority(same, same, margin=0.01)["passed"] is True
    assert ab.noninferiority(same[:20], same[:20], margin=0.01)["passed"] is False
    for kwargs in [{"alpha": 0.0}, {"alpha": 0.6}, {"margin": -0.01}]:
        with pytest.raises(ValueError):
            ab.noninferiority(same, same, **kwargs)


# -- latency and agreement -------------------------------------------------------------------


def test_latency_summary_nearest_rank():
    seconds = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    summary = latency_summary(list(reversed(seconds)))
    assert summary["count"] == 100
    assert summary["p50"] == pytest.approx(50.0)
    assert summary["p95"] == pytest.approx(95.0)
    assert summary["p99"] == pytest.approx(99.0)
    assert summary["mean"] == pytest.approx(50.5)
    assert summary["max"] == pytest.approx(100.0)
    # 20 values: rank ceil(0.95 * 20) = 19 exactly (no float drift to rank 20).
    twenty = latency_summary([i / 1000 for i in range(1, 21)])
    assert twenty["p95"] == pytest.approx(19.0) and twenty["p50"] == pytest.approx(10.0)
    assert twenty["p99"] == pytest.approx(20.0)


def test_latency_summary_edges():
    assert latency_summary([]) == {"count": 0, "p50": None, "p95": None, "p99": None, "mean": None,
                                      "max": None}
    one = latency_summary([0.0123])
    assert one["count"] == 1
    assert one["p50"] == one["p95"] == one["p99"] == one["mean"] == one["max"] == pytest.approx(12.3)
    flat = latency_summary([0.005] * 7)
    assert flat["p50"] == flat["p99"] == pytest.approx(5.0)


def test_agreement():
    assert ab.agreement([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    assert ab.agreement(["n01440764"] * 3, ["n01440764"] * 3) == 1.0
    assert math.isnan(ab.agreement([], []))
    with pytest.raises(ValueError):
        ab.agreement([1], [1, 2])


def _gate_report(a_right: list[bool], b_right: list[bool]) -> dict:
    rows = [{"label": 1, "a": {"top1": 1 if a else 0}, "b": {"top1": 1 if b else 0}}
            for a, b in zip(a_right, b_right)]
    side = {"latency_ms": {"p95": 10.0}}
    return {"a": "afd_classifier/1.0", "b": "afd_classifier/3.0", "labelled": True,
            "qualities": [{"quality": 10, "a": {"top1": sum(a_right) / len(rows), **side},
                           "b": {"top1": sum(b_right) / len(rows), **side}}],
            "outcomes": {"10": rows}}


def test_gate_on_1000_photos_passes_an_equal_model_and_fails_one_two_points_worse():
    from afdserve.evaluation.gate import promotion_gate

    a = [True] * 800 + [False] * 200
    assert promotion_gate(_gate_report(a, a), "afd_classifier", "3.0")["passed"]
    # As accurate, but disagreeing with A on 100 photos (50 each way): still passes.
    differs = a[:]
    differs[:50] = [False] * 50
    differs[800:850] = [True] * 50
    assert sum(differs) == sum(a)
    assert promotion_gate(_gate_report(a, differs), "afd_classifier", "3.0")["passed"]
    # Two points worse (20 photos more wrong): fails.
    worse = a[:]
    worse[:20] = [False] * 20
    verdict = promotion_gate(_gate_report(a, worse), "afd_classifier", "3.0")
    assert not verdict["passed"] and "accuracy at q=10" in verdict["summary"]
