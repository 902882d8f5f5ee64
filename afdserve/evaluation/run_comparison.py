"""Several AFD runs against a reference run, photo by photo: what an ablation table is made of.

``afdserve evaluate --run REF A B ...`` keeps each photo's top-1 hit in every row of each run's
eval.json; on the same photos and condition, the AFD model of run A and of the reference are
compared as a paired A/B test (``ab_stats.paired_difference``: Newcombe's interval, McNemar's p).
The share of the drop each run wins back stays the bootstrap of ``afd_report``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from afdserve.evaluation.ab_stats import PAIRED_INTERVAL_METHOD, paired_difference


def hit_bits(hits) -> str:
    """Per-photo hits as a string of 0 and 1, in the evaluation's photo order (compact in JSON)."""
    return "".join("1" if h else "0" for h in hits)


def bits_hits(bits: str) -> list[bool]:
    """The inverse of ``hit_bits``."""
    return [c == "1" for c in bits]


def compare_to_reference(results: list[dict]) -> dict:
    """Each later result's AFD top-1 minus the first's, per protocol and quality both evaluated
    with per-photo hits (rows from before hits were kept are left out)."""
    reference, rows = results[0], []
    kept = {(r["protocol"], r["quality"]): r for r in reference["rows"] if "top1_hits" in r}
    for result in results[1:]:
        if result.get("files_sha256") != reference.get("files_sha256"):
            raise SystemExit(f"{result['run']} and {reference['run']} were evaluated on different photos: "
                             "they cannot be compared photo by photo")
        for row in result["rows"]:
            ref = kept.get((row["protocol"], row["quality"]))
            if ref is None or "top1_hits" not in row:
                continue
            d = paired_difference(bits_hits(ref["top1_hits"]["afd"]), bits_hits(row["top1_hits"]["afd"]))
            rows.append({"run": result["run"], "protocol": row["protocol"], "quality": row["quality"],
                         "reference_top1": d["top1_a"], "top1": d["top1_b"], "difference": d["diff"],
                         "ci95": [d["ci_low"], d["ci_high"]], "mcnemar_p": d["mcnemar_p"],
                         "recovered_share": row.get("recovered_share"),
                         "reference_recovered_share": ref.get("recovered_share"),
                         "module_macs": result["cost"]["module_macs"]})
    return {"reference": reference["run"], "reference_module_macs": reference["cost"]["module_macs"],
            "images": reference["rows"][0]["images"], "interval": PAIRED_INTERVAL_METHOD, "rows": rows}


def comparison_markdown(comparison: dict) -> str:
    """One line per run: its top-1 change against the reference at each condition, with the
    paired 95% interval; the reference's own top-1 heads each column."""
    rows = comparison["rows"]
    conditions = list(dict.fromkeys((r["protocol"], r["quality"]) for r in rows))
    runs = list(dict.fromkeys(r["run"] for r in rows))
    by = {(r["run"], r["protocol"], r["quality"]): r for r in rows}
    first = {c: next(r for r in rows if (r["protocol"], r["quality"]) == c) for c in conditions}
    head = [f"{p} {'clean' if q == 'clean' else f'q{q}'} ({100 * first[(p, q)]['reference_top1']:.1f})"
            for p, q in conditions]
    lines = [f"Top-1 change of each run's AFD model against `{comparison['reference']}` (its top-1 % in the "
             f"heading), in points, on the same {comparison['images']} photos, with the paired 95% interval "
             f"({comparison['interval']}); module multiply-adds last.", "",
             "| run | " + " | ".join(head) + " | module MACs |",
             "| --- |" + " --- |" * (len(head) + 1)]
    for run in runs:
        cells = []
        for p, q in conditions:
            r = by.get((run, p, q))
            cells.append("" if r is None else
                         f"{100 * r['difference']:+.1f} ({100 * r['ci95'][0]:+.1f} to {100 * r['ci95'][1]:+.1f})")
        macs = next(r["module_macs"] for r in rows if r["run"] == run)
        lines.append(f"| {run} | " + " | ".join(cells) + f" | {macs / 1e6:.0f}M |")
    lines += ["", f"Reference module: {comparison['reference_module_macs'] / 1e6:.0f}M multiply-adds."]
    return "\n".join(lines) + "\n"


def comparison_plot(comparison: dict, path: Path) -> None:
    """A row of panels per protocol, a column per quality: each run's top-1 change against the
    reference with its interval, on one scale so that sizes compare across panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = comparison["rows"]
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    qualities = list(dict.fromkeys(r["quality"] for r in rows))
    runs = list(dict.fromkeys(r["run"] for r in rows))
    by = {(r["run"], r["protocol"], r["quality"]): r for r in rows}
    fig, axes = plt.subplots(len(protocols), len(qualities), sharex=True, sharey=True, squeeze=False,
                             figsize=(3.2 * len(qualities) + 1.5, (0.35 * len(runs) + 1.0) * len(protocols) + 0.6))
    for i, protocol in enumerate(protocols):
        for j, quality in enumerate(qualities):
            ax = axes[i][j]
            for y, run in enumerate(runs):
                r = by.get((run, protocol, quality))
                if r is None:
                    continue
                d, (lo, hi) = 100 * r["difference"], [100 * v for v in r["ci95"]]
                colour = "tab:green" if lo > 0 else "tab:red" if hi < 0 else "tab:gray"
                ax.errorbar(d, y, xerr=[[d - lo], [hi - d]], fmt="o", color=colour, capsize=3)
            ax.axvline(0, color="black", lw=0.8)
            ax.set_title(f"{protocol} {'clean' if quality == 'clean' else f'q{quality}'}", fontsize=9)
            ax.grid(axis="x", alpha=0.3)
            if i == len(protocols) - 1:
                ax.set_xlabel("top-1 change (points)", fontsize=8)
    axes[0][0].set_yticks(range(len(runs)), runs)
    axes[0][0].set_ylim(len(runs) - 0.5, -0.5)  # the first run on top
    for row in axes:
        row[0].tick_params(axis="y", labelsize=8)
    fig.suptitle(textwrap.fill(f"Against {comparison['reference']}, {comparison['images']} photos, paired 95% "
                               "intervals (green/red: the interval excludes 0)", 110), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
