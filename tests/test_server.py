"""The TorchServe harness (afdserve.ops.server) against a tiny echo archive, so it is tested without
the real models. The e2e tests start real servers (Java 11+ needed)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

from afdserve.packaging.manifest import write_manifest
from afdserve.ops.server import (
    LocalTorchServe,
    MissingArchiveError,
    TorchServeError,
    parse_java_version,
    read_properties,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

# One class of its own per handler file: TorchServe's loader insists on that.
ECHO_HANDLER = '''
import json


class EchoLength:
    """Answers each request with the length of its body and the size of its batch."""

    def initialize(self, context):
        self.initialized = True

    def handle(self, data, context):
        out = []
        for row in data:
            body = row.get("data") or row.get("body") or b""
            out.append(json.dumps({"length": len(body), "batch": len(data)}))
        return out
'''

BAD_HANDLER = '''
class FailsToLoad:
    def initialize(self, context):
        raise RuntimeError("boom in initialize")

    def handle(self, data, context):
        return []
'''


def _archive(src: Path, store: Path, name: str, handler_code: str) -> None:
    (src / f"{name}_handler.py").write_text(handler_code)
    (src / "model-config.yaml").write_text("minWorkers: 1\nmaxWorkers: 1\nbatchSize: 4\nmaxBatchDelay: 20\n")
    (src / "empty.pt").write_bytes(b"")
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    subprocess.run(
        [str(archiver) if archiver.exists() else "torch-model-archiver",
         "--model-name", name, "--version", "1.0",
         "--handler", str(src / f"{name}_handler.py"),
         "--serialized-file", str(src / "empty.pt"),
         "--config-file", str(src / "model-config.yaml"),
         "--export-path", str(store), "--force"],
        check=True, capture_output=True,
    )


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("model_store")
    for name, code in (("echo", ECHO_HANDLER), ("bad", BAD_HANDLER)):
        src = tmp_path_factory.mktemp(f"src_{name}")
        _archive(src, store, name, code)
        write_manifest(store / f"{name}.mar", name, "1.0")  # the server refuses unverified archives
    return store


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _refuses(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _live_processes_mentioning(text: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(text in arg for arg in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


# --- no server -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "out, expected",
    [
        ('openjdk version "17.0.15" 2025-04-15', ("17.0.15", 17)),
        ('java version "1.8.0_292"', ("1.8.0_292", 8)),
        ('openjdk version "21" 2023-09-19', ("21", 21)),
    ],
)
def test_parse_java_version(out, expected):
    assert parse_java_version(out) == expected


def test_ports_give_a_derived_config(tmp_path):
    server = LocalTorchServe(tmp_path, {}, tmp_path / "work", config_file=REPO_ROOT / "config.properties",
                             ports=(18001, 18002, 18003), extra_config={"job_queue_size": 7})
    assert server.inference_url == "http://127.0.0.1:18001"
    assert server.management_url == "http://127.0.0.1:18002"
    assert server.metrics_url == "http://127.0.0.1:18003"
    props = read_properties(server.config_path)
    assert server.config_path.parent == tmp_path / "work"
    assert props["job_queue_size"] == "7"
    assert props["grpc_inference_port"] != "7070"  # gRPC gets free ports as well
    assert props["metrics_mode"] == "prometheus"  # the rest comes from the base config
    assert read_properties(REPO_ROOT / "config.properties")["inference_address"].endswith(":8080")


def test_missing_archive_says_build(tmp_path):
    server = LocalTorchServe(tmp_path, {"afd_classifier": "afd_classifier.1.0.mar"}, tmp_path,
                             config_file=REPO_ROOT / "config.properties")
    with pytest.raises(MissingArchiveError, match="afdserve build"):
        server.start()


# --- real servers ----------------------------------------------------------------------------


@pytest.mark.e2e
def test_echo_server_auth_ready_metrics_and_clean_stop(torchserve_factory, tiny_store):
    server = torchserve_factory(tiny_store, {"echo": "echo.mar"})
    predict = f"{server.inference_url}/predictions/echo"

    # Token authorization: no key or a wrong key is refused with 400 (not 401) in 0.12.
    assert requests.post(predict, data=b"abc", timeout=10).status_code == 400
    wrong = {"Authorization": "Bearer not-the-key"}
    assert requests.post(predict, data=b"abc", headers=wrong, timeout=10).status_code == 400

    keys = server.keys()
    assert {"management", "inference", "API"} <= set(keys)
    assert "expiration time" in keys["inference"]
    assert (server.key_file.stat().st_mode & 0o777) == 0o600

    r = requests.post(predict, data=b"x" * 1234, headers=server.inference_headers(), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["length"] == 1234
    # Bodies over max_request_size (16 MiB) are refused by the frontend before any worker sees them.
    r = requests.post(predict, data=b"x" * (16 * 1024 * 1024 + 1), headers=server.inference_headers(), timeout=30)
    assert r.status_code == 413

    # A batch of concurrent requests: each gets its own answer back.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(
            lambda n: requests.post(predict, data=b"y" * n, headers=server.inference_headers(),
                                    timeout=10),
            range(1, 9)))
    assert [a.json()["length"] for a in answers] == list(range(1, 9))
    assert max(a.json()["batch"] for a in answers) <= 4

    r = requests.get(f"{server.management_url}/models/echo", headers=server.management_headers(),
                     timeout=10)
    assert r.status_code == 200
    [model] = r.json()
    assert model["batchSize"] == 4 and model["maxBatchDelay"] == 20
    assert [w["status"] for w in model["workers"]] == ["READY"]

    r = requests.get(f"{server.metrics_url}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "# TYPE" in r.text and "Requests2XX" in r.text

    ports = [int(u.rsplit(":", 1)[1]) for u in
             (server.inference_url, server.management_url, server.metrics_url)]
    tmpdir = str(server.tmpdir)
    assert _live_processes_mentioning(tmpdir)  # java (-Djava.io.tmpdir) and the worker socket

    server.stop()
    assert all(_refuses(p) for p in ports)
    assert not _live_processes_mentioning(tmpdir)
    assert not server.key_file.exists()  # torchserve --stop removes it
    server.stop()  # idempotent


@pytest.mark.e2e
def test_failed_model_load_raises_with_log_tail(torchserve_factory, tiny_store, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(TorchServeError, match="boom in initialize") as info:
        torchserve_factory(tiny_store, {"bad": "bad.mar"}, timeout=60, tmpdir=tmp_path / "tmp")
    assert "died 2 times while loading" in str(info.value)
    assert time.monotonic() - t0 < 30  # fails fast instead of waiting for the timeout
    # Only this server's processes: session-scoped servers of other tests share the base temp.
    assert not _live_processes_mentioning(str(tmp_path / "tmp"))


@pytest.mark.e2e
def test_server_dies_with_its_owner(tiny_store, tmp_path):
    """A foreground server whose owner is SIGKILLed (no stop(), no atexit) is killed too."""
    script = textwrap.dedent(f"""
        import json, sys, time
        from afdserve.ops.server import LocalTorchServe, free_ports
        s = LocalTorchServe({str(tiny_store)!r}, {{"echo": "echo.mar"}}, {str(tmp_path)!r},
                            config_file={str(REPO_ROOT / "config.properties")!r},
                            ports=tuple(free_ports(3)), tmpdir={str(tmp_path / "tmp")!r})
        s.start(timeout=60)
        print(json.dumps({{"java": s.java_process().pid}}), flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        line = owner.stdout.readline()
        assert line, "the owner failed to start its server"
        java = psutil.Process(json.loads(line)["java"])
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 15
        while _alive(java) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(java)
        # The workers go with it (killed, or exiting when their socket closes).
        while _live_processes_mentioning(str(tmp_path / "tmp")) and time.monotonic() < deadline + 10:
            time.sleep(0.2)
        assert not _live_processes_mentioning(str(tmp_path / "tmp"))
    finally:
        owner.kill()
        # Belt and braces: never leave a java behind even when the assertion above fails.
        for proc in _live_processes_mentioning(str(tmp_path / "tmp")):
            proc.kill()
