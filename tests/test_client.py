"""The serving client (afdserve.ops.client) without TorchServe: the traffic split by itself, and the
clients against a small stand-in inference API on 127.0.0.1 that checks the Bearer key the way
TorchServe does (400 "Token Authorization failed" for a wrong one)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from afdserve.ops.client import KeyFileError, Outcome, SplitClient, Target, TorchServeClient, TrafficSplit

REPO_ROOT = Path(__file__).resolve().parents[1]
A = Target("m", "1.0")
B = Target("m", "2.0")
TOKEN_FAILED = {"code": 400, "type": "InvalidKeyException",
                "message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly"}


# =============================================================================================
# Stand-in inference API
# PUT/POST /predictions/m/{version}: version 1.0 always answers top-1 index 3; version 2.0
# answers 3 for bodies starting with b"same" and 7 otherwise, so agreement is under test control.
# =============================================================================================


class FakeInferenceAPI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.key = "key-1"
        self.seen: list[dict] = []  # every request: path, authorization, body
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def paths(self) -> list[str]:
        with self.lock:
            return [r["path"] for r in self.seen]


class _Handler(BaseHTTPRequestHandler):
    server: FakeInferenceAPI

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization")
        with self.server.lock:
            self.server.seen.append({"path": self.path, "authorization": auth, "body": body})
            key = self.server.key
        if auth != f"Bearer {key}":
            return self._answer(400, TOKEN_FAILED)
        parts = self.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "predictions" or parts[1] != "m" or parts[2] not in ("1.0", "2.0"):
            return self._answer(404, {"code": 404, "type": "ModelNotFoundException",
                                      "message": f"Model not found: {self.path}"})
        version = parts[2]
        index = 3 if version == "1.0" or body.startswith(b"same") else 7
        self._answer(200, {"model": "m", "version": version,
                           "top_k": [{"index": index, "probability": 0.9}, {"index": 1, "probability": 0.1}]})

    do_POST = do_PUT

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def api():
    server = FakeInferenceAPI()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def write_keys(path: Path, inference_key: str) -> None:
    path.write_text(json.dumps({
        "management": {"key": "mgmt-key", "expiration time": "2099-01-01T00:00:00Z"},
        "inference": {"key": inference_key, "expiration time": "2099-01-01T00:00:00Z"},
        "API": {"key": "api-key"},
    }), encoding="utf-8")


@pytest.fixture
def key_file(tmp_path) -> Path:
    path = tmp_path / "key_file.json"
    write_keys(path, "key-1")
    return path


@pytest.fixture
def client(api, key_file):
    with TorchServeClient(api.url, key_file=key_file, timeout=5) as c:
        yield c


def counting_reloads(monkeypatch, client: TorchServeClient) -> list[int]:
    calls = [0]
    original = client.reload_key

    def reload_key():
        calls[0] += 1
        return original()

    monkeypatch.setattr(client, "reload_key", reload_key)
    return calls


KEYS = [f"user-{i}" for i in range(20_000)]


# -- Target ----------------------------------------------------------------------------------


def test_target_parse_and_path():
    target = Target.parse("afd_classifier/2.0")
    assert target == Target("afd_classifier", "2.0")
    assert target.path == "predictions/afd_classifier/2.0"
    assert str(target) == "afd_classifier/2.0"
    default = Target.parse("afd_classifier")
    assert default.version is None and default.path == "predictions/afd_classifier"
    for bad in ["", "/", "a/b/c"]:
        with pytest.raises(ValueError):
            Target.parse(bad)


# -- TrafficSplit ----------------------------------------------------------------------------


def test_split_is_sticky():
    split = TrafficSplit(A, B, b_share=0.5, salt="rollout-1")
    first = [split.assign(k) for k in KEYS[:500]]
    assert all(split.assign(k) == t for k, t in zip(KEYS[:500], first) for _ in range(3))
    fresh = TrafficSplit(A, B, b_share=0.5, salt="rollout-1")
    assert [fresh.assign(k) for k in KEYS[:500]] == first
    # Another salt reshuffles: about half of the keys change sides.
    other = TrafficSplit(A, B, b_share=0.5, salt="rollout-2")
    moved = sum(other.assign(k) != t for k, t in zip(KEYS[:500], first))
    assert 150 < moved < 350


def test_split_is_the_same_in_another_process():
    keys = KEYS[:200]
    here = [str(TrafficSplit(A, B, b_share=0.3, shadow_share=0.5, salt="s").assign(k)) for k in keys]
    shadows = [TrafficSplit(A, B, b_share=0.3, shadow_share=0.5, salt="s").shadow(k) for k in keys]
    code = (
        "import json, sys\n"
        "from afdserve.ops.client import Target, TrafficSplit\n"
        "s = TrafficSplit(Target('m', '1.0'), Target('m', '2.0'), b_share=0.3, shadow_share=0.5, salt='s')\n"
        f"keys = [f'user-{{i}}' for i in range({len(keys)})]\n"
        "print(json.dumps([[str(s.assign(k)) for k in keys], [s.shadow(k) for k in keys]]))\n"
    )
    # Another hash seed: Python's hash() would differ, sha256 must not.
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                         check=True).stdout
    assert json.loads(out) == [here, shadows]


@pytest.mark.parametrize("b_share", [0.1, 0.5])
def test_split_share(b_share):
    split = TrafficSplit(A, B, b_share=b_share, salt="share-test")
    share = sum(split.assign(k) == B for k in KEYS) / len(KEYS)
    assert abs(share - b_share) <= 0.015


def test_split_edges():
    none_to_b = TrafficSplit(A, B, b_share=0.0)
    all_to_b = TrafficSplit(A, B, b_share=1.0, shadow_share=1.0)
    assert all(none_to_b.assign(k) == A for k in KEYS[:2_000])
    assert all(all_to_b.assign(k) == B for k in KEYS[:2_000])
    assert not any(all_to_b.shadow(k) for k in KEYS[:2_000])  # nothing left on A to shadow
    for kwargs in [{"b_share": -0.1}, {"b_share": 1.1}, {"b_share": 0.5, "shadow_share": 1.5}]:
        with pytest.raises(ValueError):
            TrafficSplit(A, B, **kwargs)


def test_shadow_share_and_only_for_a():
    # b_share 0.5 and shadow_share 0.5: if shadowing reused the split's hash, no A key (hash >= 0.5)
    # would ever be shadowed; independent hashes shadow about half of them.
    split = TrafficSplit(A, B, b_share=0.5, shadow_share=0.5, salt="shadow-test")
    on_a = [k for k in KEYS if split.assign(k) == A]
    on_b = [k for k in KEYS if split.assign(k) == B]
    assert not any(split.shadow(k) for k in on_b)
    assert abs(sum(split.shadow(k) for k in on_a) / len(on_a) - 0.5) <= 0.015
    small = TrafficSplit(A, B, b_share=0.1, shadow_share=0.2, salt="shadow-test")
    on_a = [k for k in KEYS if small.assign(k) == A]
    assert abs(sum(small.shadow(k) for k in on_a) / len(on_a) - 0.2) <= 0.015
    assert not any(TrafficSplit(A, B, b_share=0.1).shadow(k) for k in KEYS[:2_000])
    everything = TrafficSplit(A, B, b_share=0.1, shadow_share=1.0)
    assert all(everything.shadow(k) == (everything.assign(k) == A) for k in KEYS[:2_000])


# -- TorchServeClient ------------------------------------------------------------------------


def test_predict_carries_the_bearer_key(api, client):
    outcome = client.predict(A, b"jpeg bytes")
    assert isinstance(outcome, Outcome)
    assert outcome.ok and outcome.status == 200 and outcome.error is None
    assert outcome.target == A and not outcome.shadow
    assert outcome.json["version"] == "1.0" and outcome.top1 == 3
    assert 0.0 < outcome.latency_s < 5.0
    assert api.seen == [{"path": "/predictions/m/1.0", "authorization": "Bearer key-1", "body": b"jpeg bytes"}]


def test_http_errors_do_not_raise(api, client):
    missing = client.predict(Target("nope", "1.0"), b"x")
    assert missing.status == 404 and not missing.ok
    assert "Model not found" in missing.error and missing.json["code"] == 404 and missing.top1 is None
    # Nothing listening: status 0 with the error text, no exception.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with TorchServeClient(f"http://127.0.0.1:{port}", key_file=None, timeout=2) as nowhere:
        down = nowhere.predict(A, b"x")
    assert down.status == 0 and down.json is None and "Connection" in down.error


def test_rotated_key_is_reread_once(monkeypatch, api, client, key_file):
    reloads = counting_reloads(monkeypatch, client)
    assert client.predict(A, b"x").ok  # first use reads key-1
    assert reloads[0] == 1
    # The frontend rotates the key and rewrites the file.
    api.key = "key-2"
    write_keys(key_file, "key-2")
    outcome = client.predict(A, b"x")
    assert outcome.ok
    assert reloads[0] == 2  # exactly one re-read ...
    assert [r["authorization"] for r in api.seen] == ["Bearer key-1", "Bearer key-1", "Bearer key-2"]  # ... one retry
    assert client.predict(A, b"x").ok and reloads[0] == 2  # the new key is kept


def test_wrong_key_is_retried_only_once(monkeypatch, api, client):
    client.reload_key()
    reloads = counting_reloads(monkeypatch, client)
    api.key = "a-key-the-file-does-not-have"
    outcome = client.predict(A, b"x")
    assert outcome.status == 400 and "Token Authorization failed" in outcome.error
    assert reloads[0] == 1 and len(api.seen) == 2


def test_other_400s_are_not_retried(monkeypatch, api, client):
    client.reload_key()
    reloads = counting_reloads(monkeypatch, client)
    api.key = "key-1"
    monkeypatch.setattr(_Handler, "do_PUT", lambda self: self._answer(400, {"message": "image cannot be decoded"}))
    outcome = client.predict(A, b"not a jpeg")
    assert outcome.status == 400 and reloads[0] == 0


def test_key_file_missing_or_broken(api, tmp_path):
    with TorchServeClient(api.url, key_file=tmp_path / "absent.json", timeout=5) as no_keys:
        outcome = no_keys.predict(A, b"x")
    assert outcome.status == 400 and api.seen[-1]["authorization"] is None
    broken = tmp_path / "broken.json"
    broken.write_text('{"inference": ', encoding="utf-8")  # caught mid-rewrite
    with TorchServeClient(api.url, key_file=broken, timeout=5) as half_written:
        outcome = half_written.predict(A, b"x")
        assert outcome.status == 0 and "broken.json" in outcome.error
        with pytest.raises(KeyFileError):
            half_written.reload_key()


# -- SplitClient -----------------------------------------------------------------------------


def test_split_client_routes_counts_and_shadows(api, client):
    split = TrafficSplit(A, B, b_share=0.5, shadow_share=1.0, salt="live")
    keys = [f"img-{i}" for i in range(40)]
    bodies = {k: (b"same-" if i % 4 else b"diff-") + k.encode() for i, k in enumerate(keys)}
    with SplitClient(client, split) as ab:
        outcomes = {k: ab.predict(bodies[k], key=k) for k in keys}
        assert ab.wait_for_shadows(timeout=10)
        stats = ab.stats()
        shadow_outcomes = list(ab.shadow_outcomes)
    on_a = [k for k in keys if split.assign(k) == A]
    on_b = [k for k in keys if split.assign(k) == B]
    assert on_a and on_b
    for k, outcome in outcomes.items():
        # The caller always gets its assigned version's answer, never the shadow's.
        assert outcome.target == split.assign(k) and not outcome.shadow
        assert outcome.json["version"] == split.assign(k).version
    assert stats["live"]["m/1.0"]["requests"] == len(on_a)
    assert stats["live"]["m/2.0"]["requests"] == len(on_b)
    assert stats["live"]["m/1.0"]["errors"] == stats["live"]["m/2.0"]["errors"] == 0
    assert stats["live"]["m/1.0"]["latency_ms"]["count"] == len(on_a)
    shadow = stats["shadow"]
    assert shadow["target"] == "m/2.0"
    assert shadow["requests"] == shadow["pairs"] == len(on_a) and shadow["errors"] == 0 and shadow["dropped"] == 0
    expected_agreement = sum(bodies[k].startswith(b"same") for k in on_a) / len(on_a)
    assert shadow["agreement"] == pytest.approx(expected_agreement)
    assert 0.0 < shadow["agreement"] < 1.0
    assert len(shadow_outcomes) == len(on_a) and all(o.shadow and o.target == B for o in shadow_outcomes)
    # On the wire: every live request once, plus one copy to B per A request, all with the key.
    paths = api.paths()
    assert paths.count("/predictions/m/1.0") == len(on_a)
    assert paths.count("/predictions/m/2.0") == len(on_b) + len(on_a)
    assert all(r["authorization"] == "Bearer key-1" for r in api.seen)


def test_split_client_without_shadow_counts_errors(api, client):
    split = TrafficSplit(A, Target("m", "9.9"), b_share=0.5, salt="errors")  # B is not served: 404
    keys = [f"img-{i}" for i in range(30)]
    ab = SplitClient(client, split)
    try:
        outcomes = [ab.predict(b"same", key=k) for k in keys]
        stats = ab.stats()
    finally:
        ab.close()
    to_b = sum(split.assign(k) != A for k in keys)
    assert sum(o.status == 404 for o in outcomes) == to_b
    assert (stats["live"]["m/9.9"]["requests"], stats["live"]["m/9.9"]["errors"]) == (to_b, to_b)
    assert stats["live"]["m/1.0"]["errors"] == 0
    assert stats["shadow"]["requests"] == 0 and stats["shadow"]["agreement"] is None
    assert len(api.seen) == len(keys)


def test_shadow_copies_are_dropped_not_queued(api, client):
    split = TrafficSplit(A, B, b_share=0.0, shadow_share=1.0)
    with SplitClient(client, split, max_pending_shadows=0) as ab:
        for i in range(5):
            assert ab.predict(b"same", key=f"k{i}").target == A
        assert ab.wait_for_shadows(timeout=5)
        stats = ab.stats()
    assert stats["shadow"]["dropped"] == 5 and stats["shadow"]["requests"] == 0
    assert api.paths() == ["/predictions/m/1.0"] * 5


def test_split_client_counts_from_many_threads(api, client):
    split = TrafficSplit(A, B, b_share=0.3, shadow_share=0.5, salt="threads")
    keys = [f"t{i}" for i in range(80)]
    with SplitClient(client, split, shadow_workers=2) as ab:
        workers = [threading.Thread(target=lambda part: [ab.predict(b"same", key=k) for k in part],
                                    args=(keys[i::4],)) for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=10)
        assert ab.wait_for_shadows(timeout=10)
        stats = ab.stats()
    on_a = [k for k in keys if split.assign(k) == A]
    shadowed = sum(split.shadow(k) for k in keys)
    assert stats["live"]["m/1.0"]["requests"] == len(on_a)
    assert stats["live"]["m/2.0"]["requests"] == len(keys) - len(on_a)
    assert stats["shadow"]["requests"] == stats["shadow"]["pairs"] == shadowed > 0
    assert stats["shadow"]["agreement"] == 1.0
    assert len(api.seen) == len(keys) + shadowed
