"""``afdserve loadtest``: many concurrent clients against a served classifier for a bounded time,
optionally killing a worker in the middle, from a process of its own on loopback.

Reports throughput, latency percentiles, every non-200 answer (grouped by status and message),
and whether any request got another request's answer: each request body is one of a few photos
encoded at a JPEG quality no other body has, so the ``jpeg_quality`` of an answer names the body
it belongs to, and its top-1 class must be the one that body got when sent alone before the load.

With ``--kill-worker-after S`` one worker of the model is SIGKILLed after S seconds: the report
says how many requests failed and how long until a request sent after the kill was answered
again. After the load, one more request checks that the server recovered.

With ``--attackers N`` the load runs twice, first with the honest clients alone, then with N more
clients sending cost bombs (``afdserve.experiments.cost_bombs``: small bodies whose structure once cost
seconds to decode) as fast as they are answered: the report compares the honest clients'
latencies and errors between the two runs.
"""

from __future__ import annotations

import collections
import io
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from afdserve.experiments.cost_bombs import cost_bombs
from afdserve.ops.client import Target, TorchServeClient
from afdserve.ops.latency import latency_summary
from afdserve.ops.management import Management
from afdserve.ops.server import LocalTorchServe

# The photos scikit-image ships (its data module needs no download for these).
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def tagged_bodies(count: int = 16) -> dict[int, bytes]:
    """JPEG quality -> body: ``count`` bodies, each at a quality no other one has."""
    from skimage import data

    qualities = [20 + 5 * i for i in range(count)]  # 20, 25, ... (the estimate is exact for Pillow's tables)
    if qualities[-1] > 100:
        raise ValueError("at most 17 tagged bodies")
    bodies = {}
    for i, q in enumerate(qualities):
        out = io.BytesIO()
        Image.fromarray(getattr(data, PHOTOS[i % len(PHOTOS)])()).convert("RGB").save(out, "JPEG", quality=q)
        bodies[q] = out.getvalue()
    return bodies


def run_load(client: TorchServeClient, target: Target, clients: int, duration_s: float,
             kill_after_s: float | None = None, management: Management | None = None,
             bodies: dict[int, bytes] | None = None, attackers: int = 0) -> dict:
    bodies = bodies or tagged_bodies()
    # What each body gets alone, before any load: the reference for correlating answers.
    expected = {}
    for q, body in bodies.items():
        o = client.predict(target, body)
        if o.status != 200:
            raise RuntimeError(f"calibration request failed: HTTP {o.status} {o.error}")
        expected[q] = o.top1

    records = []  # (sent_at, done_at, status, mismatch, error, latency)
    attacks = []  # (bomb name, status, latency)
    bombs = cost_bombs() if attackers else ()
    lock = threading.Lock()
    kill = {}
    start = time.monotonic()
    stop_at = start + duration_s

    def killer():
        time.sleep(kill_after_s)
        pids = management.worker_pids(target.model, target.version)
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            kill.update(pid=pids[0], at=time.monotonic() - start)

    def client_loop(n: int):
        keys = list(bodies)
        i = n
        while time.monotonic() < stop_at:
            q = keys[i % len(keys)]
            i += clients
            sent = time.monotonic() - start
            o = client.predict(target, bodies[q])
            done = time.monotonic() - start
            mismatch = None
            if o.status == 200:
                got_q = o.json.get("jpeg_quality") if isinstance(o.json, dict) else None
                if got_q != q or o.top1 != expected[q]:
                    mismatch = {"sent_quality": q, "answer_quality": got_q, "expected_top1": expected[q],
                                "answer_top1": o.top1}
            with lock:
                records.append((sent, done, o.status, mismatch, None if o.status == 200 else (o.error or "")[:200],
                                o.latency_s))

    def attacker_loop(n: int):
        i = n
        while time.monotonic() < stop_at:
            bomb = bombs[i % len(bombs)]
            i += attackers
            o = client.predict(target, bomb.body)
            with lock:
                attacks.append((bomb.name, o.status, o.latency_s))

    threads = []
    if kill_after_s is not None:
        threads.append(threading.Thread(target=killer, daemon=True))
        threads[-1].start()
    with ThreadPoolExecutor(clients + attackers) as pool:
        loops = [pool.submit(client_loop, n) for n in range(clients)]
        loops += [pool.submit(attacker_loop, n) for n in range(attackers)]
        for loop in loops:
            loop.result()
    wall = time.monotonic() - start
    for t in threads:
        t.join(timeout=30)

    ok = [r for r in records if r[2] == 200]
    failures = collections.Counter((r[2], r[4]) for r in records if r[2] != 200)
    report = {
        "target": str(target), "clients": clients, "duration_s": round(wall, 2), "requests": len(records),
        "answered_200": len(ok), "throughput_rps": round(len(ok) / wall, 2) if wall else 0.0,
        "latency_ms": latency_summary([r[5] for r in ok]),
        "non_200": [{"status": s, "count": c, "error": e} for (s, e), c in failures.most_common()],
        "mismatched_answers": [r[3] for r in records if r[3]][:20],
        "mismatched_count": sum(1 for r in records if r[3]),
    }
    if attackers:
        report["attackers"] = {
            "clients": attackers, "requests": len(attacks),
            "statuses": dict(collections.Counter(str(a[1]) for a in attacks)),
            "latency_ms": latency_summary([a[2] for a in attacks]),
        }
    if kill:
        after = [r for r in records if r[0] >= kill["at"] and r[2] == 200]
        first_ok = min((r[1] for r in after), default=None)
        report["kill"] = {
            "worker_pid": kill["pid"], "at_s": round(kill["at"], 2),
            "failed_requests": sum(1 for r in records if r[2] != 200),
            "recovered_after_s": None if first_ok is None else round(first_ok - kill["at"], 2),
        }
    # Nothing hangs and the server recovers once the load stops.
    time.sleep(0.5)
    final = client.predict(target, next(iter(bodies.values())))
    report["recovered"] = final.status == 200
    return report


def markdown(report: dict) -> str:
    lat = report["latency_ms"]
    lines = [f"# Load test: {report['target']}", "",
             f"- {report['clients']} clients for {report['duration_s']} s: {report['requests']} requests, "
             f"{report['answered_200']} answered 200, {report['throughput_rps']} req/s",
             "- latency (200s): " + ", ".join(f"{k} {lat[k]:.0f} ms" if lat[k] is not None else f"{k} -"
                                              for k in ("p50", "p95", "p99")),
             f"- answers belonging to another request: {report['mismatched_count']}",
             f"- served after the load: {'yes' if report['recovered'] else 'NO'}"]
    if "kill" in report:
        k = report["kill"]
        lines.append(f"- worker {k['worker_pid']} killed at {k['at_s']} s: {k['failed_requests']} requests failed, "
                     f"answered again {k['recovered_after_s']} s after the kill")
    if "attackers" in report:
        a, alat = report["attackers"], report["attackers"]["latency_ms"]
        statuses = ", ".join(f"{n} x {status}" for status, n in sorted(a["statuses"].items()))
        lines.append(f"- beside them {a['clients']} attackers sent {a['requests']} cost bombs: {statuses}; "
                     f"answered in p50 {alat['p50'] or 0:.0f} ms, p99 {alat['p99'] or 0:.0f} ms")
    if report["non_200"]:
        lines += ["", "| status | count | error |", "| --- | --- | --- |"]
        lines += [f"| {f['status']} | {f['count']} | {' '.join((f['error'] or '').split()).replace('|', '/')[:120]} |"
                  for f in report["non_200"]]
    return "\n".join(lines) + "\n"


def cmd_loadtest(args) -> int:
    target = Target.parse(args.target)
    client = TorchServeClient(args.url, key_file=args.key_file, timeout=args.timeout)
    management = None
    if args.kill_worker_after is not None:
        # The management side of the server started from this directory (its key file).
        server = LocalTorchServe("model_store", {}, workdir=Path(args.key_file).resolve().parent,
                                 config_file=args.config, foreground=False)
        management = Management.for_server(server)
    if args.attackers:
        report = attack_comparison(client, target, args.clients, args.duration, args.attackers)
        text = attack_markdown(report)
        ok = all(r["recovered"] and not r["mismatched_count"] for r in (report["alone"], report["attacked"]))
    else:
        report = run_load(client, target, args.clients, args.duration, args.kill_worker_after, management)
        text = markdown(report)
        ok = report["recovered"] and not report["mismatched_count"]
    print(text)
    if args.json:  # and the Markdown beside it
        Path(args.json).write_text(json.dumps(report, indent=2))
        Path(args.json).with_suffix(".md").write_text(text)
    return 0 if ok else 1


def attack_comparison(client: TorchServeClient, target: Target, clients: int, duration_s: float,
                      attackers: int) -> dict:
    """The honest clients alone, then beside ``attackers`` clients sending cost bombs."""
    bodies = tagged_bodies()
    alone = run_load(client, target, clients, duration_s, bodies=bodies)
    attacked = run_load(client, target, clients, duration_s, bodies=bodies, attackers=attackers)
    p99_alone, p99_attacked = alone["latency_ms"]["p99"], attacked["latency_ms"]["p99"]
    return {"target": str(target), "alone": alone, "attacked": attacked,
            "p99_ratio": round(p99_attacked / p99_alone, 2) if p99_alone and p99_attacked else None}


def attack_markdown(report: dict) -> str:
    rows = []
    for phase, label in (("alone", "honest clients alone"), ("attacked", "beside the attackers")):
        r = report[phase]
        lat = r["latency_ms"]
        errors = sum(f["count"] for f in r["non_200"])
        rows.append(f"| {label} | {r['clients']} | {r['requests']} | {errors} | {lat['p50'] or 0:.0f} | "
                    f"{lat['p99'] or 0:.0f} | {r['throughput_rps']} |")
    a = report["attacked"]["attackers"]
    statuses = ", ".join(f"{n} x {status}" for status, n in sorted(a["statuses"].items()))
    return "\n".join([
        f"# Cost bombs against {report['target']}", "",
        "| run | honest clients | honest requests | honest non-200 | p50 ms | p99 ms | honest req/s |",
        "| --- | --- | --- | --- | --- | --- | --- |", *rows, "",
        f"- honest p99 beside the attackers / alone: {report['p99_ratio']}",
        f"- {a['clients']} attackers sent {a['requests']} bombs ({len(cost_bombs())} kinds, afdserve.experiments.cost_bombs): "
        f"{statuses}; their p50 {a['latency_ms']['p50'] or 0:.0f} ms, p99 {a['latency_ms']['p99'] or 0:.0f} ms",
    ]) + "\n"


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("loadtest", help="concurrent clients against a served model for a bounded time")
    p.add_argument("--target", default="afd_classifier", help="NAME or NAME/VERSION (default: %(default)s)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--duration", type=float, default=20, help="seconds of load (default: %(default)s)")
    p.add_argument("--kill-worker-after", type=float, default=None, metavar="S",
                   help="SIGKILL one worker of the model after S seconds (same machine only)")
    p.add_argument("--attackers", type=int, default=0, metavar="N",
                   help="run twice: the clients alone, then beside N clients sending cost bombs, and compare")
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--key-file", default="key_file.json")
    p.add_argument("--config", default="config.properties", help="for the management address with --kill-worker-after")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--json", help="also write the report here")
    p.set_defaults(func=cmd_loadtest)
