"""End to end: two versions of one model served at once, promoted, retired, compared with
`afdserve ab`, split by the client, and counted per version in the Prometheus metrics."""

import io
import json
import shutil
from pathlib import Path

import pytest
import requests
from PIL import Image
from skimage import data

from afdserve.evaluation.gate import promotion_gate
from afdserve.experiments.ab import run_ab
from afdserve.packaging.archive import build_spec, variant
from afdserve.cli import main
from afdserve.ops.client import SplitClient, Target, TorchServeClient, TrafficSplit
from afdserve.packaging.manifest import read_manifest, read_serving_state, served_archives
from afdserve.ops.server import LocalTorchServe, TorchServeError, free_ports

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[1]
A, B = Target("afd_classifier", "1.0"), Target("afd_classifier", "0.0")


def jpeg(array, quality=90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(scope="module")
def model_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("model_store")
    build_spec(variant("afd_classifier"), store)  # the release, 1.0
    # The plain backbone as version 0.0 of the same model: one command, other weights.
    assert main(["build", "--models", "afd_classifier", "--version", "0.0", "--weights", "none",
                 "--model-store", str(store)]) == 0
    return store


@pytest.fixture(scope="module")
def server(model_store, torchserve_session_factory):
    return torchserve_session_factory(model_store, {"afd_classifier": served_archives(model_store, "afd_classifier")})


@pytest.fixture
def cli(server, monkeypatch):
    """`afdserve ...` as run from the directory the server was started in (its key file)."""
    monkeypatch.chdir(server.workdir)

    def run(*argv):
        return main([*argv, "--model-store", str(server.model_store), "--config", str(server.config_path)])
    return run


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ab_data")
    (folder / "images").mkdir()
    photos = {"chelsea.jpg": (data.chelsea(), 281), "coffee.jpg": (data.coffee(), 967),
              "astronaut.jpg": (data.astronaut(), 0), "rocket.jpg": (data.rocket(), 0)}
    rows = ["file,class_index"]
    for name, (array, label) in photos.items():
        (folder / "images" / name).write_bytes(jpeg(array))
        rows.append(f"{name},{label}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_manifests_name_model_version_and_checksums(model_store):
    for version in ("1.0", "0.0"):
        manifest = read_manifest(model_store / f"afd_classifier.{version}.mar")
        assert manifest["model"] == "afd_classifier" and manifest["version"] == version
        assert len(manifest["archive_sha256"]) == 64 and "model.pt" in manifest["weights_sha256"]
    assert read_manifest(model_store / "afd_classifier.1.0.mar")["record"]["afd_config"]["width"] == 8
    assert read_manifest(model_store / "afd_classifier.0.0.mar")["record"] is None  # no AFD module


def test_both_versions_answer_with_their_own_version(server):
    body = jpeg(data.chelsea(), 30)
    headers = server.inference_headers()
    default = requests.put(f"{server.inference_url}/predictions/afd_classifier", data=body, headers=headers, timeout=60)
    assert default.status_code == 200 and default.json()["version"] == "1.0"  # the newest is the default
    for target in (A, B):
        r = requests.put(f"{server.inference_url}/{target.path}", data=body, headers=headers, timeout=60)
        assert r.status_code == 200 and r.json()["version"] == target.version


def test_models_lists_versions_and_the_default(cli, capsys):
    assert cli("models", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["version"], r["default"], r["status"]) for r in rows} == {("1.0", True, "READY"),
                                                                          ("0.0", False, "READY")}


def test_ab_report_counts_and_promotion_gate(server, labelled_folder, tmp_path):
    client = TorchServeClient(server.inference_url, key_file=server.key_file)
    report = run_ab(client, A, B, labelled_folder, [None, 10], concurrency=2, progress=False)
    assert report["labelled"] and report["images"] == 4
    for q in report["qualities"]:
        assert q["images"] == 4 and q["answered_by_both"] == 4
        assert q["a"]["errors"] == q["b"]["errors"] == 0
        assert q["a"]["latency_ms"]["count"] == 4
        assert 0 <= q["agreement"] <= 1 and q["paired"]["n"] == 4
        assert 0 <= q["paired"]["mcnemar_p"] <= 1
    # Four images can show nothing: the gate refuses to promote on them.
    verdict = promotion_gate(report, "afd_classifier", "0.0", margin=0.01)
    assert not verdict["passed"] and "fails the gate" in verdict["summary"]
    with pytest.raises(ValueError):
        promotion_gate(report, "afd_classifier", "1.0")  # 1.0 is A in this report

    # The command writes the three files.
    out = tmp_path / "ab"
    assert main(["ab", "--a", str(A), "--b", str(B), "--data", str(labelled_folder), "--quality", "original",
                 "--url", server.inference_url, "--key-file", str(server.key_file), "--out", str(out),
                 "--no-progress"]) == 0
    assert {p.name for p in out.iterdir()} == {"ab.md", "ab.json", "ab.png"}
    assert json.loads((out / "ab.json").read_text())["qualities"][0]["images"] == 4


def test_split_client_routes_sticky_and_shadows(server):
    client = TorchServeClient(server.inference_url, key_file=server.key_file)
    split = SplitClient(client, TrafficSplit(A, B, b_share=0.5, shadow_share=1.0, salt="e2e"))
    body = jpeg(data.coffee(), 20)
    for key in [f"user-{i}" for i in range(12)]:
        outcome = split.predict(body, key)
        assert outcome.status == 200
        # The answer comes from the version the key is assigned to, never from a shadow.
        assert outcome.json["version"] == split.split.assign(key).version
    stats = split.stats()
    assert sum(s["requests"] for s in stats["live"].values()) == 12
    assert split.wait_for_shadows(timeout=60)
    shadow = split.stats()["shadow"]
    assert shadow["target"] == str(B) and shadow["requests"] == stats["live"].get(str(A), {"requests": 0})["requests"]
    assert shadow["errors"] == 0 and shadow["pairs"] == shadow["requests"]


def test_prometheus_counts_per_version(server):
    headers = server.inference_headers()
    requests.put(f"{server.inference_url}/predictions/afd_classifier/0.0", data=b"not an image", headers=headers,
                 timeout=60)
    text = requests.get(f"{server.metrics_url}/metrics", timeout=10).text
    assert 'ts_inference_requests_total{model_name="afd_classifier",model_version="0.0"' in text
    assert 'ts_inference_requests_total{model_name="afd_classifier",model_version="1.0"' in text
    assert "RequestsByQualityBand{" in text and 'QualityBand="11-30"' in text
    rejected = [line for line in text.splitlines() if line.startswith("RejectedInputs{")]
    assert any('ModelVersion="0.0"' in line and 'Status="400"' in line for line in rejected)


def test_promote_and_retire(cli, server, capsys):
    url = f"{server.inference_url}/predictions/afd_classifier"
    body = jpeg(data.chelsea(), 50)
    assert cli("retire", "afd_classifier", "1.0") == 1  # the default cannot be retired
    assert "default" in capsys.readouterr().err
    assert cli("promote", "afd_classifier", "0.0") == 0
    assert requests.put(url, data=body, headers=server.inference_headers(), timeout=60).json()["version"] == "0.0"
    assert read_serving_state(server.model_store)["defaults"] == {"afd_classifier": "0.0"}
    # Now 1.0 can go; with the model API off its workers are scaled to zero.
    assert cli("retire", "afd_classifier", "1.0") == 0
    r = requests.put(f"{url}/1.0", data=body, headers=server.inference_headers(), timeout=60)
    assert r.status_code == 503
    assert read_serving_state(server.model_store)["retired"] == {"afd_classifier": ["1.0"]}
    # The next start loads what is left, the recorded default first.
    assert served_archives(server.model_store, "afd_classifier") == ["afd_classifier.0.0.mar"]
    assert cli("promote", "afd_classifier", "1.0") == 0  # back as it was, for other tests
    assert served_archives(server.model_store, "afd_classifier")[0] == "afd_classifier.1.0.mar"


def test_tampered_archive_is_refused(model_store, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    for f in ("afd_classifier.1.0.mar", "afd_classifier.1.0.manifest.json"):
        shutil.copy(model_store / f, store / f)
    with open(store / "afd_classifier.1.0.mar", "r+b") as f:
        f.seek(-100, 2)
        byte = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    server = LocalTorchServe(store, {"afd_classifier": "afd_classifier.1.0.mar"}, tmp_path / "work",
                             config_file=REPO_ROOT / "config.properties", ports=tuple(free_ports(3)),
                             tmpdir=tmp_path / "tmp")
    with pytest.raises(TorchServeError, match="does not match its manifest"):
        server.start(timeout=30)
    (store / "afd_classifier.1.0.manifest.json").unlink()
    with pytest.raises(TorchServeError, match="no manifest"):
        server.start(timeout=30)
