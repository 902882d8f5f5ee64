"""``afdserve models`` / ``promote`` / ``retire``: the served versions, through TorchServe's
management API.

- models: every registered model and version, which one is the default, workers and their status.
- promote NAME VERSION: makes VERSION the default (``/predictions/NAME`` answers with it) and
  records that in the store's serving.json, so a restart keeps it. ``--if-better REPORT`` first
  checks an ``afdserve ab`` report: B must be not worse than A on top-1 (one-sided test) and
  within the latency budget, or nothing changes.
- retire NAME VERSION: takes a version out of service, never the default. With the model API on
  (``enable_model_api=true``) it is unregistered; with it off (our default) its workers are
  scaled to zero, so requests pinned to it get 503 at once, and serving.json keeps it from being
  loaded at the next start.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import requests

from afdserve.evaluation.gate import DEFAULT_MARGIN, promotion_gate
from afdserve.packaging.manifest import record_default, record_retired
from afdserve.ops.server import LocalTorchServe, TorchServeError


class ManagementError(RuntimeError):
    pass


class Management:
    """The management API of the TorchServe started from ``workdir`` (its key file is there)."""

    def __init__(self, management_url: str, headers: dict, timeout: float = 30):
        self.url, self.headers, self.timeout = management_url.rstrip("/"), headers, timeout

    @classmethod
    def for_server(cls, server: LocalTorchServe) -> "Management":
        return cls(server.management_url, server.management_headers())

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            return requests.request(method, f"{self.url}{path}", headers=self.headers,
                                    timeout=self.timeout, **kwargs)
        except requests.RequestException as err:
            raise ManagementError(f"management API at {self.url} unreachable: {err}") from None

    def _json(self, method: str, path: str, **kwargs):
        r = self._call(method, path, **kwargs)
        if r.status_code != 200:
            raise ManagementError(f"{method} {path}: HTTP {r.status_code}: {_message(r)}")
        return r.json()

    def model_names(self) -> list[str]:
        names, token = [], None
        while True:
            page = self._json("GET", "/models", params={"limit": 100, **({"next_page_token": token} if token else {})})
            names += [m["modelName"] for m in page.get("models", [])]
            token = page.get("nextPageToken")
            if not token:
                return names

    def default_version(self, name: str) -> str:
        [described] = self._json("GET", f"/models/{name}")
        return described["modelVersion"]

    def versions(self, name: str) -> list[dict]:
        """One row per registered version: version, default, workers, status."""
        default = self.default_version(name)
        rows = []
        for v in self._json("GET", f"/models/{name}/all"):
            statuses = [w.get("status", "?") for w in v.get("workers", [])]
            status = "READY" if statuses and all(s == "READY" for s in statuses) else (
                ",".join(sorted(set(statuses))) or "NO WORKERS")
            rows.append({"model": name, "version": v["modelVersion"], "default": v["modelVersion"] == default,
                         "workers": len(statuses), "min_workers": v.get("minWorkers"),
                         "batch_size": v.get("batchSize"), "status": status})
        return rows

    def worker_pids(self, name: str, version: str | None = None) -> list[int]:
        """Process ids of the workers of NAME (its default version when ``version`` is None)."""
        path = f"/models/{name}/{version}" if version else f"/models/{name}"
        return [int(w["pid"]) for v in self._json("GET", path) for w in v.get("workers", []) if w.get("pid")]

    def set_default(self, name: str, version: str) -> None:
        """Make ``version`` the default; a retired one (no workers) gets its worker back first,
        so the default always serves."""
        rows = {row["version"]: row for row in self.versions(name)}
        if version not in rows:
            raise ManagementError(f"{name} has no version {version} (registered: {', '.join(rows)})")
        if rows[version]["workers"] == 0:
            self._json("PUT", f"/models/{name}/{version}",
                       params={"min_worker": 1, "max_worker": 1, "synchronous": "true"})
        self._json("PUT", f"/models/{name}/{version}/set-default")

    def retire(self, name: str, version: str) -> str:
        """'unregistered' or 'scaled-to-zero'. Refuses the default version."""
        if self.default_version(name) == version:
            raise ManagementError(f"{name} {version} is the default version: promote another one first")
        known = [v["version"] for v in self.versions(name)]
        if version not in known:
            raise ManagementError(f"{name} has no version {version} (registered: {', '.join(known)})")
        r = self._call("DELETE", f"/models/{name}/{version}")
        if r.status_code == 200:
            return "unregistered"
        if r.status_code != 405:  # 405: the model API is off; anything else is a real failure
            raise ManagementError(f"DELETE /models/{name}/{version}: HTTP {r.status_code}: {_message(r)}")
        self._json("PUT", f"/models/{name}/{version}",
                   params={"min_worker": 0, "max_worker": 0, "synchronous": "true"})
        return "scaled-to-zero"


def _message(r: requests.Response) -> str:
    try:
        return r.json().get("message", r.text.strip())
    except ValueError:
        return r.text.strip()[:200]


def _management(args) -> Management:
    server = LocalTorchServe(args.model_store, {}, workdir=Path.cwd(), config_file=args.config, foreground=False)
    return Management.for_server(server)


def format_table(rows: list[dict]) -> str:
    header = ["model", "version", "default", "workers", "status"]
    cells = [[str(r["model"]), str(r["version"]), "yes" if r["default"] else "", str(r["workers"]), r["status"]]
             for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)] if cells else [len(h) for h in header]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header)] + [line(c) for c in cells])


def cmd_models(args) -> int:
    try:
        m = _management(args)
        rows = [row for name in m.model_names() for row in m.versions(name)]
    except (ManagementError, TorchServeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def cmd_promote(args) -> int:
    try:
        m = _management(args)
        if args.if_better is not None:
            verdict = promotion_gate(json.loads(Path(args.if_better).read_text()), args.name, args.version,
                                     margin=args.margin, alpha=args.alpha, latency_budget=args.latency_budget)
            print(verdict["summary"])
            if not verdict["passed"]:
                print(f"not promoted: {args.name} {args.version} stays as it is", file=sys.stderr)
                return 3
        m.set_default(args.name, args.version)
    except (ManagementError, TorchServeError, OSError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    record_default(args.model_store, args.name, args.version)
    print(f"{args.name} {args.version} is the default version")
    return 0


def cmd_retire(args) -> int:
    try:
        how = _management(args).retire(args.name, args.version)
    except (ManagementError, TorchServeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    record_retired(args.model_store, args.name, args.version)
    if how == "unregistered":
        print(f"{args.name} {args.version} unregistered")
    else:
        print(f"{args.name} {args.version} retired: no workers (requests pinned to it get 503); the model API "
              "is off, so it stays listed until the next start, which leaves it out")
    return 0


def add_commands(subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model-store", type=Path, default=Path("model_store"), help="default: %(default)s")
    common.add_argument("--config", default="config.properties", help="TorchServe config (default: %(default)s)")

    p = subparsers.add_parser("models", parents=[common], help="list served models and versions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = subparsers.add_parser("promote", parents=[common], help="make a version the default")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--if-better", metavar="AB_JSON", default=None,
                   help="an `afdserve ab` report (ab.json) comparing the default (A) with this version (B): "
                        "promote only when B is not worse on top-1 and within the latency budget")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help=f"non-inferiority margin on top-1, as a share (default {DEFAULT_MARGIN} = "
                        f"{100 * DEFAULT_MARGIN:g} points: see afdserve.evaluation.gate)")
    p.add_argument("--alpha", type=float, default=0.05, help="one-sided test level (default 0.05)")
    p.add_argument("--latency-budget", type=float, default=1.3,
                   help="B's p95 latency at most this times A's (default 1.3)")
    p.set_defaults(func=cmd_promote)

    p = subparsers.add_parser("retire", parents=[common], help="take a (non-default) version out of service")
    p.add_argument("name")
    p.add_argument("version")
    p.set_defaults(func=cmd_retire)
