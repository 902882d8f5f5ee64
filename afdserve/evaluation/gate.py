"""The promotion gate: whether an ``afdserve ab`` report backs making its B the default version.
Pure Python (``afdserve promote --if-better`` runs it without torch)."""

from __future__ import annotations

from afdserve.evaluation.ab_stats import noninferiority


def _ms(value: float | None) -> str:
    return "no answer" if value is None else f"{value:.0f} ms"


# Two points: on 1000 photos, a B as accurate as A passes while the two disagree on up to about
# 12% of the photos (the 95% upper bound of A - B is then 1.8 points), and a B two points worse
# never does (its bound is above 2). A one-point margin failed B's of equal accuracy that differed
# from A on 8% of the photos (bound 1.5), which a new module does; on the 202 validation photos no
# margin under 3 points lets such a B pass.
DEFAULT_MARGIN = 0.02


def promotion_gate(report: dict, name: str, version: str, margin: float = DEFAULT_MARGIN, alpha: float = 0.05,
                   latency_budget: float = 1.3) -> dict:
    """Whether an A/B report backs promoting NAME/VERSION (its B): at every quality B's top-1 is
    not worse than A's by more than ``margin`` (one-sided non-inferiority test at level
    ``alpha`` on the paired outcomes), and B's p95 latency is at most ``latency_budget`` times A's."""
    wanted = f"{name}/{version}"
    if report.get("b") != wanted:
        raise ValueError(f"the report compares {report.get('a')} (A) with {report.get('b')} (B), not {wanted} as B")
    if not report.get("labelled"):
        return {"passed": False, "summary": "the A/B report has no labels: accuracy cannot be tested"}
    reasons, lines = [], []
    for q in report["qualities"]:
        rows = report["outcomes"][str(q["quality"])]
        a_ok = [r["a"]["top1"] == r["label"] for r in rows]
        b_ok = [r["b"]["top1"] == r["label"] for r in rows]
        test = noninferiority(a_ok, b_ok, margin=margin, alpha=alpha)
        a_p95, b_p95 = q["a"]["latency_ms"]["p95"], q["b"]["latency_ms"]["p95"]
        fast = a_p95 is not None and b_p95 is not None and b_p95 <= latency_budget * a_p95
        lines.append(f"q={q['quality']}: top-1 A {100 * q['a']['top1']:.1f}% B {100 * q['b']['top1']:.1f}%, "
                     f"A - B at most {100 * test['upper_bound']:.1f} points ({100 * (1 - alpha):.0f}% one-sided; "
                     f"margin {100 * margin:.1f}): {'not worse' if test['passed'] else 'NOT shown not worse'}; "
                     f"p95 A {_ms(a_p95)} B {_ms(b_p95)}: {'within' if fast else 'OVER'} {latency_budget}x")
        if not test["passed"]:
            reasons.append(f"accuracy at q={q['quality']}")
        if not fast:
            reasons.append(f"latency at q={q['quality']}")
    passed = not reasons
    verdict = "passes the gate" if passed else "fails the gate: " + ", ".join(reasons)
    return {"passed": passed, "summary": "\n".join(lines + [f"{wanted} {verdict}"])}
