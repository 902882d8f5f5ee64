"""``afdserve ab``: replay an image folder through the inference API to two model versions and
compare them, paired on the same images.

Per JPEG quality ("original" = the files as stored; a number = re-encoded by Pillow, as in
``afdserve evaluate``): top-1 of A and of B with 95% intervals, the paired difference with an
exact McNemar test, the agreement of their top-1 answers, latency p50/p95/p99 and the errors of
each. Without labels (no labels.csv) only agreement, latency and errors. Writes ab.md, ab.json
(with the per-image outcomes the promotion gate re-tests) and ab.png.

Every image goes to both versions, in turns (see ``replay``): the latencies are each model's own,
not those of two workers sharing the cores.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from afdserve.evaluation.ab_stats import agreement, paired_difference, wilson_interval
from afdserve.ops.client import Target, TorchServeClient
from afdserve.experiments.reports import write_report
from afdserve.ops.latency import latency_summary
from afdserve.data.folders import load_images
from afdserve.data.jpeg import jpeg_bytes, parse_qualities


def replay(client: TorchServeClient, a: Target, b: Target, images, quality, concurrency: int,
           progress: bool = True) -> list[dict]:
    """One row per image: label, and for each version its status, top-1 index and latency.

    A and B are measured in turns, never at once: each group of ``concurrency`` images goes to
    one version (concurrently, so it batches as it would under load), then to the other, and which
    goes first alternates between groups. Sent to both at once, the two versions' workers fought
    over the same cores, and p95 latencies came out 4-6x the p50: the gate compared the fight,
    not the models."""
    images = list(images)
    rows = [{"image": path.name, "label": label} for path, label in images]
    desc = f"q={'original' if quality is None else quality}"
    with ThreadPoolExecutor(concurrency) as pool, tqdm(total=len(images), desc=desc, unit="img",
                                                       disable=not progress) as bar:
        for group, start in enumerate(range(0, len(images), concurrency)):
            members = range(start, min(start + concurrency, len(images)))
            bodies = {k: jpeg_bytes(images[k][0], quality) for k in members}
            for side, target in (("a", a), ("b", b)) if group % 2 == 0 else (("b", b), ("a", a)):
                for k, o in zip(members, pool.map(lambda k: client.predict(target, bodies[k]), members)):
                    rows[k][side] = {"status": o.status, "top1": o.top1 if o.status == 200 else None,
                                     "latency_s": o.latency_s, "error": o.error}
            bar.update(len(members))
    return rows


def summarize(rows: list[dict], quality) -> dict:
    labelled = all(r["label"] is not None for r in rows)
    out = {"quality": "original" if quality is None else quality, "images": len(rows), "labelled": labelled}
    for side in ("a", "b"):
        statuses = [r[side]["status"] for r in rows]
        errors = {}
        for s in statuses:
            if s != 200:
                errors[str(s)] = errors.get(str(s), 0) + 1
        ok_latency = [r[side]["latency_s"] for r in rows if r[side]["status"] == 200]
        out[side] = {"errors": sum(errors.values()), "errors_by_status": errors,
                     "latency_ms": latency_summary(ok_latency)}
    both = [r for r in rows if r["a"]["status"] == 200 and r["b"]["status"] == 200]
    out["answered_by_both"] = len(both)
    out["agreement"] = agreement([r["a"]["top1"] for r in both], [r["b"]["top1"] for r in both]) if both else None
    if labelled and rows:
        # An error counts as a wrong answer: a version that fails requests must not look better.
        a_ok = [r["a"]["top1"] == r["label"] for r in rows]
        b_ok = [r["b"]["top1"] == r["label"] for r in rows]
        for side, ok in (("a", a_ok), ("b", b_ok)):
            low, high = wilson_interval(sum(ok), len(ok))
            out[side].update(top1=sum(ok) / len(ok), top1_ci95=[low, high])
        out["paired"] = paired_difference(a_ok, b_ok)  # with the exact McNemar p
    return out


def markdown(report: dict) -> str:
    a, b = report["a"], report["b"]
    lines = [f"# A/B: {a} (A) vs {b} (B)", "",
             f"{report['images']} images from `{report['data']}`, {report['concurrency']} concurrent "
             f"clients, {report['server']}.", ""]
    labelled = report["labelled"]
    if labelled:
        lines += ["| quality | top-1 A (95% CI) | top-1 B (95% CI) | B - A (95% CI) | McNemar p | agreement "
                  "| p50/p95/p99 A ms | p50/p95/p99 B ms | errors A/B |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    else:
        lines += ["No labels: agreement and latency only.", "",
                  "| quality | agreement | p50/p95/p99 A ms | p50/p95/p99 B ms | errors A/B |",
                  "| --- | --- | --- | --- | --- |"]
    for q in report["qualities"]:
        lat = {s: "/".join(f"{q[s]['latency_ms'][k]:.0f}" if q[s]["latency_ms"][k] is not None else "-"
                           for k in ("p50", "p95", "p99")) for s in ("a", "b")}
        agree = "-" if q["agreement"] is None else f"{100 * q['agreement']:.1f}%"
        errs = f"{q['a']['errors']}/{q['b']['errors']}"
        if labelled:
            p = q["paired"]
            ci = lambda s: f"{100 * q[s]['top1']:.1f} ({100 * q[s]['top1_ci95'][0]:.1f}-{100 * q[s]['top1_ci95'][1]:.1f})"  # noqa: E731
            lines.append(f"| {q['quality']} | {ci('a')} | {ci('b')} | {100 * p['diff']:+.1f} "
                         f"({100 * p['ci_low']:+.1f} to {100 * p['ci_high']:+.1f}) | {p['mcnemar_p']:.3g} "
                         f"| {agree} | {lat['a']} | {lat['b']} | {errs} |")
        else:
            lines.append(f"| {q['quality']} | {agree} | {lat['a']} | {lat['b']} | {errs} |")
    lines += ["", "Top-1 intervals: Wilson; B - A: paired (same images), McNemar exact on the discordant "
              "pairs; an error counts as a wrong answer. Latency: client-side, successful requests."]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qs = report["qualities"]
    labels = [str(q["quality"]) for q in qs]
    x = range(len(qs))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if report["labelled"]:
        for side, name, dx in (("a", report["a"], -0.1), ("b", report["b"], 0.1)):
            top = [100 * q[side]["top1"] for q in qs]
            err = [[100 * (q[side]["top1"] - q[side]["top1_ci95"][0]) for q in qs],
                   [100 * (q[side]["top1_ci95"][1] - q[side]["top1"]) for q in qs]]
            axes[0].errorbar([i + dx for i in x], top, yerr=err, fmt="o-", capsize=3, label=name)
        axes[0].set_ylabel("top-1 (%), 95% CI")
    else:
        axes[0].plot(list(x), [100 * (q["agreement"] or 0) for q in qs], "o-", label="agreement")
        axes[0].set_ylabel("top-1 agreement A/B (%)")
    axes[0].set_xticks(list(x), labels)
    axes[0].set_xlabel("JPEG quality")
    axes[0].legend()
    width = 0.35
    for side, name, dx in (("a", report["a"], -width / 2), ("b", report["b"], width / 2)):
        p95 = [q[side]["latency_ms"]["p95"] or 0 for q in qs]
        axes[1].bar([i + dx for i in x], p95, width, label=name)
    axes[1].set_xticks(list(x), labels)
    axes[1].set_xlabel("JPEG quality")
    axes[1].set_ylabel("p95 latency (ms)")
    axes[1].legend()
    fig.suptitle(f"A/B: {report['a']} vs {report['b']} ({report['images']} images)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_ab(client: TorchServeClient, a: Target, b: Target, data: Path, qualities, concurrency: int,
           limit: int = 0, progress: bool = True) -> dict:
    images = load_images(data)
    if limit:
        images = images[:limit]
    per_quality, outcomes = [], {}
    for quality in qualities:
        rows = replay(client, a, b, images, quality, concurrency, progress)
        per_quality.append(summarize(rows, quality))
        outcomes[str(per_quality[-1]["quality"])] = rows
    return {"a": str(a), "b": str(b), "data": str(data), "images": len(images), "concurrency": concurrency,
            "server": client.base_url, "labelled": all(label is not None for _, label in images),
            "qualities": per_quality, "outcomes": outcomes}


def cmd_ab(args) -> int:
    a, b = Target.parse(args.a), Target.parse(args.b)
    client = TorchServeClient(args.url, key_file=args.key_file, timeout=args.timeout)
    report = run_ab(client, a, b, args.data, parse_qualities(args.quality), args.concurrency, args.limit,
                    progress=not args.no_progress)
    write_report(args.out, "ab", report, markdown(report), plot)
    print(f"wrote {args.out}/ab.md, ab.json, ab.png")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("ab", help="compare two served model versions on an image folder",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--a", required=True, help="NAME/VERSION, e.g. afd_classifier/1.0 (the current default)")
    p.add_argument("--b", required=True, help="NAME/VERSION, the candidate")
    p.add_argument("--data", type=Path, required=True,
                   help="folder with labels.csv + images/ (as ../shared/data/imagenet-samples), or any image folder")
    p.add_argument("--quality", default="original,10,30",
                   help="comma-separated JPEG qualities; 'original' = the files as stored (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--url", default="http://127.0.0.1:8080", help="inference API (default: %(default)s)")
    p.add_argument("--key-file", default="key_file.json", help="TorchServe key file (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--out", type=Path, default=Path("results") / "ab")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_ab)

