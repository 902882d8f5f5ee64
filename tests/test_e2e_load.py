"""End to end: load from a second process, a worker killed mid-load, saturation, and a restart
that keeps versions and defaults."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from afdserve.packaging.archive import build_spec, variant
from afdserve.cli import main
from afdserve.packaging.manifest import served_archives

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("model_store")
    build_spec(variant("afd_classifier"), store)
    build_spec(variant("afd_classifier", "0.0", "none"), store)
    return store


def loadtest(server, tmp_path, *args) -> tuple[int, dict]:
    """`afdserve loadtest` in a process of its own, as a user would run it."""
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, "-m", "afdserve.cli", "loadtest", "--url", server.inference_url,
         "--key-file", str(server.key_file), "--config", str(server.config_path), "--json", str(out), *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert out.exists(), proc.stdout + proc.stderr
    return proc.returncode, json.loads(out.read_text())


def test_worker_killed_mid_load(model_store, torchserve_factory, tmp_path):
    server = torchserve_factory(model_store, {"afd_classifier": ["afd_classifier.1.0.mar"]})
    rc, report = loadtest(server, tmp_path, "--target", "afd_classifier/1.0", "--clients", "8",
                          "--duration", "12", "--kill-worker-after", "3")
    print(json.dumps({k: report[k] for k in ("requests", "throughput_rps", "latency_ms", "non_200", "kill")}))
    assert rc == 0
    assert report["mismatched_count"] == 0  # no answer went to another request
    assert report["recovered"]
    kill = report["kill"]
    assert kill["recovered_after_s"] is not None and kill["recovered_after_s"] < 30
    # Only the batch in flight (and what queued meanwhile) fails, with a server error, never a 4xx.
    # (TorchServe answers 507 for a batch whose worker died: it assumes it ran out of memory.)
    assert {f["status"] for f in report["non_200"]} <= {500, 503, 507}
    assert report["answered_200"] > kill["failed_requests"]


def test_saturation_gets_503_not_a_hang(model_store, torchserve_factory, tmp_path):
    # A queue of 2 behind one worker: most of 24 clients' requests find it full.
    server = torchserve_factory(model_store, {"afd_classifier": ["afd_classifier.1.0.mar"]},
                                extra_config={"job_queue_size": 2})
    rc, report = loadtest(server, tmp_path, "--target", "afd_classifier/1.0", "--clients", "24", "--duration", "6")
    print(json.dumps({k: report[k] for k in ("requests", "answered_200", "non_200", "latency_ms")}))
    assert rc == 0 and report["recovered"] and report["mismatched_count"] == 0
    assert {f["status"] for f in report["non_200"]} <= {503}
    assert report["answered_200"] > 0
    assert report["latency_ms"]["p99"] < 30_000  # answered or refused, never left hanging


def test_restart_serves_the_same_versions_and_default(model_store, torchserve_factory, monkeypatch, tmp_path):
    models = {"afd_classifier": served_archives(model_store, "afd_classifier")}
    server = torchserve_factory(model_store, models)
    monkeypatch.chdir(server.workdir)
    assert main(["promote", "afd_classifier", "0.0", "--model-store", str(model_store),
                 "--config", str(server.config_path)]) == 0
    server.stop()

    again = torchserve_factory(model_store, {"afd_classifier": served_archives(model_store, "afd_classifier")})
    r = requests.get(f"{again.management_url}/models/afd_classifier/all", headers=again.management_headers(),
                     timeout=10)
    assert sorted(v["modelVersion"] for v in r.json()) == ["0.0", "1.0"]
    [default] = requests.get(f"{again.management_url}/models/afd_classifier",
                             headers=again.management_headers(), timeout=10).json()
    assert default["modelVersion"] == "0.0"


def test_cost_bombs_beside_honest_clients(model_store, torchserve_factory, tmp_path):
    """Attackers sending cost bombs get their 413s, honest clients beside them only 200s, and
    the honest p99 stays near what it is without them (the goal is 2x, measured 1.27x on a quiet
    machine; 4 here leaves room for a noisy shared one, where 3.3x was seen, and still catches
    a bomb that holds a worker: without the limits one took 49 s. `afdserve loadtest
    --attackers` measures it properly)."""
    server = torchserve_factory(model_store, {"afd_classifier": ["afd_classifier.1.0.mar"]})
    rc, report = loadtest(server, tmp_path, "--target", "afd_classifier/1.0", "--clients", "8",
                          "--duration", "8", "--attackers", "2")
    alone, attacked = report["alone"], report["attacked"]
    print(json.dumps({"p99_ratio": report["p99_ratio"], "alone": alone["latency_ms"],
                      "attacked": attacked["latency_ms"], "attackers": attacked["attackers"]}))
    assert rc == 0
    assert alone["non_200"] == [] and attacked["non_200"] == []
    assert set(attacked["attackers"]["statuses"]) == {"413"} and attacked["attackers"]["requests"] > 0
    assert report["p99_ratio"] < 4.0
