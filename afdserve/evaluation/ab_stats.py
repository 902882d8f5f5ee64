"""Statistics for an A/B comparison of two model versions on the same labelled images.

Both versions classify the same images, so the comparison is paired: per image, A and B are each
right or wrong, and only the images where they disagree (the discordant pairs) tell them apart.
Everything here is pure Python (no scipy), so the library keeps its declared dependencies.

  wilson_interval      confidence interval for one version's top-1 accuracy
  mcnemar_exact        exact two-sided McNemar test on the discordant counts
  paired_difference    top-1 of B minus top-1 of A with a Newcombe paired interval and McNemar p
  noninferiority       is B worse than A by less than a margin? (one-sided bound on A - B)
  agreement            share of identical top-1 predictions

Latency percentiles are ``afdserve.ops.latency``'s.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

PAIRED_INTERVAL_METHOD = "Newcombe (1998) method 10: hybrid score (square-and-add Wilson) with phi correction"


def _z(confidence: float) -> float:
    """Two-sided standard normal quantile for ``confidence`` (0.95 -> 1.95996...)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (no continuity correction) for a proportion ``successes / n``.

    Unlike the Wald interval it stays inside [0, 1] and does not collapse to a point at 0 or n
    successes, which matters for error rates of a few in a thousand. n == 0 gives (0.0, 1.0):
    no data rules nothing out.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    z = _z(confidence)
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    # At 0 or n successes the limit is exactly 0 or 1; rounding must not push it outside.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


EXACT_TAIL_MAX_N = 5_000  # up to here the tail is summed in integers, exactly


def _binomial_half_lower_tail(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), with k <= n / 2.

    Up to ``EXACT_TAIL_MAX_N`` as an exact integer sum over 2**n (one rounding, at the division).
    Beyond, in log space: terms shrink as i falls below n / 2, so the sum runs from k downwards
    and stops once the remaining terms cannot change a double (relative error ~1e-11).
    """
    if n <= EXACT_TAIL_MAX_N:
        term, total = 1, 1  # C(n, 0)
        for i in range(k):
            term = term * (n - i) // (i + 1)
            total += term
        return total / 2**n
    log_norm = math.lgamma(n + 1) - n * math.log(2.0)
    total = 0.0
    for i in range(k, -1, -1):
        term = math.exp(log_norm - math.lgamma(i + 1) - math.lgamma(n - i + 1))
        total += term
        if term < total * 1e-17:
            break
    return total


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for the discordant counts.

    b = images A got right and B wrong, c = images A got wrong and B right. Under "A and B are
    equally accurate" each discordant image is a fair coin, so the test is the binomial test of
    min(b, c) against Binomial(b + c, 1/2): p = min(1, 2 * P(X <= min(b, c))). No discordant
    pairs (b + c == 0) gives 1.0.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0 or abs(b - c) <= 1:
        return 1.0  # exactly: the two tails together cover every outcome
    return min(1.0, 2.0 * _binomial_half_lower_tail(min(b, c), n))


def _check_paired(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> None:
    if len(a_correct) != len(b_correct):
        raise ValueError(f"paired results need equal lengths, got {len(a_correct)} and {len(b_correct)}")


def _paired_counts(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> tuple[int, int, int, int]:
    """(both right, A right & B wrong, A wrong & B right, both wrong)."""
    _check_paired(a_correct, b_correct)
    both = b = c = neither = 0
    for a_ok, b_ok in zip(a_correct, b_correct):
        a_ok, b_ok = bool(a_ok), bool(b_ok)
        if a_ok and b_ok:
            both += 1
        elif a_ok:
            b += 1
        elif b_ok:
            c += 1
        else:
            neither += 1
    return both, b, c, neither


def newcombe_paired_interval(both: int, b: int, c: int, neither: int,
                             confidence: float = 0.95) -> tuple[float, float]:
    """Interval for top1_B - top1_A from the paired 2x2 table (Newcombe 1998, method 10).

    Square-and-add: each limit combines the distances from the two marginal proportions to their
    Wilson limits, with the cross term weighted by the phi coefficient of the 2x2 table (plain
    phi, no continuity correction; phi = 0 when a margin is empty). It stays inside [-1, 1] and
    does not collapse when there are no discordant pairs, unlike the paired Wald interval, and it
    approaches the Wald interval for large n. n == 0 gives (-1.0, 1.0).
    """
    n = both + b + c + neither
    if n == 0:
        _z(confidence)  # still reject a bad confidence
        return -1.0, 1.0
    right_b, right_a = both + c, both + b
    p1, p2 = right_b / n, right_a / n
    l1, u1 = wilson_interval(right_b, n, confidence)
    l2, u2 = wilson_interval(right_a, n, confidence)
    # Rows: B right / wrong; columns: A right / wrong.
    margins = right_b * (b + neither) * right_a * (c + neither)
    phi = (both * neither - c * b) / math.sqrt(margins) if margins > 0 else 0.0
    theta = p1 - p2
    # max(0, .): with |phi| <= 1 the sums are >= 0 exactly; rounding may make them -1e-18.
    down = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2.0 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    up = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2.0 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, theta - down), min(1.0, theta + up)


def paired_difference(a_correct: Sequence[bool], b_correct: Sequence[bool],
                      confidence: float = 0.95) -> dict:
    """Top-1 of B minus top-1 of A on the same images, with an interval and McNemar's test.

    ``a_correct[i]`` / ``b_correct[i]``: whether A / B got image i right. The interval is
    Newcombe's hybrid score interval for paired proportions (method 10, see
    ``newcombe_paired_interval``); ``mcnemar_p`` is the exact two-sided McNemar p-value. With
    n == 0 the proportions and diff are NaN, the interval (-1, 1) and the p-value 1.
    """
    both, b, c, neither = _paired_counts(a_correct, b_correct)
    n = both + b + c + neither
    low, high = newcombe_paired_interval(both, b, c, neither, confidence)
    nan = float("nan")
    return {
        "n": n,
        "top1_a": (both + b) / n if n else nan,
        "top1_b": (both + c) / n if n else nan,
        "diff": (c - b) / n if n else nan,  # B - A; only the discordant pairs move it
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
        "method": PAIRED_INTERVAL_METHOD,
        "b": b,
        "c": c,
        "mcnemar_p": mcnemar_exact(b, c),
    }


def noninferiority(a_correct: Sequence[bool], b_correct: Sequence[bool], margin: float = 0.01,
                   alpha: float = 0.05) -> dict:
    """One-sided test that B's top-1 is not worse than A's by ``margin`` or more.

    H0: top1_A - top1_B >= margin  against  H1: top1_A - top1_B < margin (margin as a share:
    0.01 = one point). The upper (1 - alpha) confidence bound of A - B is minus the lower limit of
    the two-sided (1 - 2 alpha) Newcombe paired interval for B - A (the same interval as
    ``paired_difference``); B passes when that bound is below the margin, which is a level-alpha
    test. The interval is approximate: at small n, and with few discordant pairs, its one-sided
    coverage can be off by a point or two, so treat a bound close to the margin as undecided.
    With n == 0 the bound is 1 and B does not pass.
    """
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    both, b, c, neither = _paired_counts(a_correct, b_correct)
    n = both + b + c + neither
    low, _ = newcombe_paired_interval(both, b, c, neither, confidence=1.0 - 2.0 * alpha)
    upper = -low
    return {
        "n": n,
        "top1_a": (both + b) / n if n else float("nan"),
        "top1_b": (both + c) / n if n else float("nan"),
        "diff_a_minus_b": (b - c) / n if n else float("nan"),
        "upper_bound": upper,
        "margin": margin,
        "alpha": alpha,
        "passed": upper < margin,
        "method": f"one-sided upper bound of A - B from {PAIRED_INTERVAL_METHOD}",
    }


def agreement(a_labels: Sequence, b_labels: Sequence) -> float:
    """Share of positions where A and B predict the same top-1 label; NaN for no pairs."""
    _check_paired(a_labels, b_labels)
    if not a_labels:
        return float("nan")
    return sum(1 for x, y in zip(a_labels, b_labels) if x == y) / len(a_labels)
