"""Restore-then-classify, several restorers side by side on the same photos (issue 16's table).

Reads the reports of ``afdserve evaluate-restorer --classify`` (their eval.json, which keep each
image's hit), takes the photos every report has, and writes one table: top-1 of plain Lite0, of
Lite0 + AFD and of each restorer + Lite0 per JPEG quality, the share of the clean->JPEG drop each
wins back, the restorer's change against plain Lite0 on clean photos, and each restorer against
the first one; all with paired bootstrap 95% intervals over the photos. PSNR on LIVE1 comes from
the reports' restoration rows, or from --psnr for a restorer measured before.

    python scripts/compare_restore_classify.py \
        --report "PSNR (lambda 0)=results/task-restorer/lambda-0/eval.json" \
        --report "lambda 1=results/task-restorer/lambda-1/eval.json" --out results/task-restorer/compare
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from afdserve.evaluation.afd_report import bootstrap_share, pct


def labelled(text: str) -> tuple[str, list[Path]]:
    """LABEL=PATH, or LABEL=PATH+PATH for one restorer evaluated in parts (--skip/--limit)."""
    label, sep, paths = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"LABEL=PATH expected, got {text!r}")
    return label, [Path(path) for path in paths.split("+")]


def joined(paths: list[Path]) -> dict:
    """One report from the reports of disjoint parts of a folder: files and hits one after another."""
    parts = [json.loads(path.read_text()) for path in paths]
    report = parts[0]
    for part in parts[1:]:
        cls, more = report["classification"], part["classification"]
        if set(cls["files"]) & set(more["files"]):
            raise SystemExit("the parts of a report must not share photos")
        conditions = [[(r["protocol"], r["quality"]) for r in c["rows"]] for c in (cls, more)]
        if conditions[0] != conditions[1]:
            raise SystemExit(f"the parts of a report must have the same protocols and qualities: {conditions}")
        cls["files"] += more["files"]
        cls["images"] += more["images"]
        for row, other in zip(cls["rows"], more["rows"]):
            n, m = len(row["hits"]["plain"]), len(other["hits"]["plain"])
            row["restore_seconds_per_image"] = (n * row["restore_seconds_per_image"]
                                                + m * other["restore_seconds_per_image"]) / (n + m)
            row["hits"] = {k: v + other["hits"][k] for k, v in row["hits"].items()}
        report["restoration"] = report.get("restoration") or part.get("restoration", [])
    return report


def hits_by_condition(report: dict) -> dict[str, dict[str, np.ndarray]]:
    """{quality: {"plain"|"afd"|"restored": per-image 0/1 in the report's file order}} (P1 rows)."""
    out = {}
    for row in report["classification"]["rows"]:
        if row["protocol"] == "P1":
            out[str(row["quality"])] = {k: np.array([c == "1" for c in v], dtype=float) for k, v in row["hits"].items()}
    return out


def paired_difference(a: np.ndarray, b: np.ndarray, resamples: int, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) - mean(b) over the same photos, and its 95% bootstrap interval."""
    idx = np.random.default_rng(seed).integers(0, len(a), (resamples, len(a)))
    diffs = a[idx].mean(1) - b[idx].mean(1)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(a.mean() - b.mean()), float(lo), float(hi)


def psnr_rows(report: dict) -> dict[int, float]:
    return {r["quality"]: r["restored_psnr"] - r["jpeg_psnr"] for r in report.get("restoration", [])
            if r["testset"] == "LIVE1_color"}


def compare(reports: list[tuple[str, dict]], psnr: dict[str, dict[int, float]], resamples: int) -> dict:
    # The photos every report has, in the first report's order.
    shared = set.intersection(*(set(r["classification"]["files"]) for _, r in reports))
    files = [f for f in reports[0][1]["classification"]["files"] if f in shared]
    per_report = []
    for label, report in reports:
        position = {f: i for i, f in enumerate(report["classification"]["files"])}
        take = np.array([position[f] for f in files])
        per_report.append((label, {q: {k: v[take] for k, v in h.items()} for q, h in hits_by_condition(report).items()}))
    first_label, first = per_report[0]
    clean = first["clean"]["plain"]
    rows = []
    for quality in first:
        plain, afd = first[quality]["plain"], first[quality]["afd"]
        row = {"quality": quality, "plain": plain.mean(), "afd": afd.mean(), "restorers": {}}
        if quality != "clean":
            row["afd_won_back"] = bootstrap_share(clean, plain, afd, resamples)
        for label, hits in per_report:
            restored = hits[quality]["restored"]
            entry = {"top1": restored.mean()}
            if quality == "clean":
                entry["vs_plain"] = paired_difference(restored, plain, resamples)
            else:
                entry["won_back"] = bootstrap_share(clean, plain, restored, resamples)
            if label != first_label:
                entry["vs_first"] = paired_difference(restored, first[quality]["restored"], resamples)
            row["restorers"][label] = entry
        rows.append(row)
    psnr_gain = {label: psnr.get(label) or psnr_rows(report) for label, report in reports}
    return {"images": len(files), "data": reports[0][1]["classification"].get("data"), "first": first_label,
            "labels": [label for label, _ in reports], "rows": rows, "live1_psnr_gain_db": psnr_gain,
            "restore_seconds_per_image": {label: np.mean([r["restore_seconds_per_image"]
                                                          for r in report["classification"]["rows"]])
                                          for label, report in reports}}


def interval(point_lo_hi, scale: float = 100.0, sign: bool = False) -> str:
    point, lo, hi = point_lo_hi
    if math.isnan(point):
        return "n/a"
    fmt = "{:+.1f}" if sign else "{:.1f}"
    return f"{fmt.format(scale * point)} ({fmt.format(scale * lo)} to {fmt.format(scale * hi)})"


def markdown(result: dict) -> str:
    labels, first = result["labels"], result["first"]
    lines = [f"# Restore-then-classify: {result['images']} photos of {result['data']} (P1)", "",
             "Top-1 (%). Below each quality: the share of plain Lite0's clean->JPEG drop won back; on clean "
             "photos the change against plain Lite0 (points); paired bootstrap 95% intervals.", "",
             "| quality | Lite0 | Lite0 + AFD | " + " | ".join(f"{label} + Lite0" for label in labels) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in labels) + " |"]
    for row in result["rows"]:
        cells = [row["quality"], pct(row["plain"]), pct(row["afd"])]
        cells += [pct(row["restorers"][label]["top1"]) for label in labels]
        lines.append("| " + " | ".join(cells) + " |")
        if row["quality"] == "clean":
            extra = ["change", "", ""] + [interval(row["restorers"][label]["vs_plain"], sign=True) for label in labels]
        else:
            extra = ["won back", "", interval(row["afd_won_back"])]
            extra += [interval(row["restorers"][label]["won_back"]) for label in labels]
        lines.append("| " + " | ".join(extra) + " |")
    lines += ["", f"Each restorer against `{first}` (top-1 points, paired):", "",
              "| quality | " + " | ".join(label for label in labels if label != first) + " |",
              "| --- | " + " | ".join("---" for label in labels if label != first) + " |"]
    for row in result["rows"]:
        lines.append(f"| {row['quality']} | " + " | ".join(
            interval(row["restorers"][label]["vs_first"], sign=True) for label in labels if label != first) + " |")
    lines += ["", "| restorer | LIVE1 PSNR gain q10 / q40 (dB) | restoring s/image (227x227, as evaluated: "
              "the machine's load may differ between reports) |",
              "| --- | --- | --- |"]
    for label in labels:
        gain = {int(k): v for k, v in (result["live1_psnr_gain_db"].get(label) or {}).items()}
        psnr = " / ".join(f"{gain[q]:+.2f}" if q in gain else "n/a" for q in (10, 40))
        lines.append(f"| {label} | {psnr} | {result['restore_seconds_per_image'][label]:.2f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [r["quality"] for r in rows]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(x, [100 * r["plain"] for r in rows], "o-", color="tab:gray", label="Lite0")
    ax.plot(x, [100 * r["afd"] for r in rows], "o-", color="tab:blue", label="Lite0 + AFD (served default)")
    for label in result["labels"]:
        ax.plot(x, [100 * r["restorers"][label]["top1"] for r in rows], "s--", label=f"{label} + Lite0")
    ax.set_xticks(x, [f"q{n}" if n != "clean" else n for n in names])
    ax.set_ylabel(f"top-1 (%), {result['images']} photos")
    ax.set_xlabel("JPEG quality (P1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=labelled, action="append", required=True, metavar="LABEL=EVAL_JSON",
                        help="an evaluate-restorer --classify report (A+B: one evaluated in two parts); the "
                             "first is the reference")
    parser.add_argument("--psnr", type=labelled, action="append", default=[], metavar="LABEL=EVAL_JSON",
                        help="take LABEL's LIVE1 PSNR from this report instead")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    reports = [(label, joined(paths)) for label, paths in args.report]
    psnr = {}
    for label, paths in args.psnr:
        psnr.setdefault(label, {}).update(psnr_rows(joined(paths)))
    result = compare(reports, psnr, args.bootstrap)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(result, indent=2))
    (args.out / "compare.md").write_text(markdown(result))
    plot(result, args.out / "compare.png")
    print(markdown(result))
    print(f"written: {args.out}/compare.md, compare.json, compare.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
