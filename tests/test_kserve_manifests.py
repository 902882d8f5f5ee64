"""Structure of the KServe deployment in deploy/kserve/ (no cluster here: YAML and properties only).

What the checks stand for:
- inferenceservice.yaml (stable) and canary.yaml are one InferenceService in two states: the same
  name and spec apart from storageUri and canaryTrafficPercent.
- config/config.properties is what KServe's TorchServe runtime and the KServe wrapper of the
  torchserve-kfs image read from /mnt/models/config/: the model store under /mnt/models, TorchServe
  on 8085 (the wrapper holds 8080/8081), a model_snapshot naming the project's archives, the v1
  envelope with batches of one, and the local server's limits and Prometheus metrics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
KSERVE_DIR = REPO_ROOT / "deploy" / "kserve"
STABLE = KSERVE_DIR / "inferenceservice.yaml"
CANARY = KSERVE_DIR / "canary.yaml"
CLUSTER_CONFIG = KSERVE_DIR / "config" / "config.properties"
LOCAL_CONFIG = REPO_ROOT / "config.properties"

PROJECT_MODELS = {"afd_classifier", "lite0_baseline", "swinir_restorer", "restore_classify"}
ARCHIVE_RE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_-]*)\.(?P<version>[0-9A-Za-z][0-9A-Za-z._-]*)\.mar$")
# The settings the cluster keeps equal to the local server's.
SHARED_LIMITS = ("max_request_size", "max_response_size", "job_queue_size", "default_response_timeout")
STORAGE_SCHEMES = {"pvc", "s3", "gs", "https", "http", "hdfs", "webhdfs", "oci"}


def parse_properties(text: str, name: str = "config.properties") -> dict[str, str]:
    """key=value lines of a TorchServe config; '#'/'!' comments and blank lines skipped. Refuses
    what this simple reading (and the KServe wrapper's) would get wrong: continuation lines,
    lines without '=', a key given twice."""
    props: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        assert not line.endswith("\\"), f"{name}:{number}: continuation lines are not supported"
        assert "=" in line, f"{name}:{number}: not a key=value line: {raw!r}"
        key, value = (part.strip() for part in line.split("=", 1))
        assert key and key not in props, f"{name}:{number}: empty or repeated key {key!r}"
        props[key] = value
    return props


def read_properties(path: Path) -> dict[str, str]:
    return parse_properties(path.read_text(), path.name)


def load_single_document(path: Path) -> dict:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1, f"{path.name} should hold one YAML document, found {len(docs)}"
    assert isinstance(docs[0], dict)
    return docs[0]


def host_port(address: str) -> tuple[str, int]:
    parts = urlsplit(address)
    assert parts.scheme in {"http", "https"} and parts.hostname and parts.port, address
    return parts.hostname, parts.port


def snapshot_models(props: dict[str, str]) -> dict[str, dict[str, dict]]:
    snapshot = json.loads(props["model_snapshot"])
    assert isinstance(snapshot.get("models"), dict) and snapshot["models"], "model_snapshot lists no models"
    return snapshot["models"]


@pytest.fixture(scope="module")
def stable() -> dict:
    return load_single_document(STABLE)


@pytest.fixture(scope="module")
def canary() -> dict:
    return load_single_document(CANARY)


@pytest.fixture(scope="module")
def cluster() -> dict[str, str]:
    return read_properties(CLUSTER_CONFIG)


# --------------------------------------------------------------------------------------------
# The InferenceService manifests
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [STABLE, CANARY], ids=["stable", "canary"])
def test_manifest_is_a_torchserve_inferenceservice(path):
    isvc = load_single_document(path)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["kind"] == "InferenceService"
    assert isvc["metadata"]["name"]
    # Canary splitting needs the Knative-based mode ("Knative" is its newer name).
    mode = isvc["metadata"].get("annotations", {}).get("serving.kserve.io/deploymentMode")
    assert mode in {"Serverless", "Knative"}
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "pytorch"
    # config.properties pins the v1 envelope ("kserve"), so the protocol must be v1 too.
    assert model.get("protocolVersion", "v1") == "v1"
    scheme = urlsplit(model["storageUri"]).scheme
    assert scheme in STORAGE_SCHEMES, model["storageUri"]


def test_canary_is_the_same_inferenceservice(stable, canary):
    assert canary["metadata"]["name"] == stable["metadata"]["name"]
    assert canary["metadata"].get("namespace") == stable["metadata"].get("namespace")


def test_only_the_canary_splits_traffic(stable, canary):
    assert "canaryTrafficPercent" not in stable["spec"]["predictor"]
    percent = canary["spec"]["predictor"].get("canaryTrafficPercent")
    # bool is an int in Python; YAML "true" must not pass for a percentage.
    assert isinstance(percent, int) and not isinstance(percent, bool)
    assert 1 <= percent <= 99


def test_canary_points_at_a_new_release(stable, canary):
    assert canary["spec"]["predictor"]["model"]["storageUri"] != stable["spec"]["predictor"]["model"]["storageUri"]


def test_canary_changes_nothing_else(stable, canary):
    """A canary that also changed the image or resources would not compare model against model."""
    def without_release(isvc: dict) -> dict:
        copy = json.loads(json.dumps(isvc))
        copy["spec"]["predictor"].pop("canaryTrafficPercent", None)
        copy["spec"]["predictor"]["model"].pop("storageUri")
        return copy

    assert without_release(canary) == without_release(stable)


# --------------------------------------------------------------------------------------------
# The cluster's TorchServe config
# --------------------------------------------------------------------------------------------


def test_config_uses_the_kserve_model_layout(cluster):
    store = Path(cluster["model_store"])
    assert store.is_absolute() and store.parts[:3] == ("/", "mnt", "models"), store
    # KServe's runtime passes --model-store=/mnt/models/model-store and the wrapper looks there.
    assert store == Path("/mnt/models/model-store")


def test_config_ports_leave_the_wrappers_ports_free(cluster):
    inference = host_port(cluster["inference_address"])
    management = host_port(cluster["management_address"])
    metrics = host_port(cluster["metrics_address"])
    # The KServe wrapper holds 8080 (HTTP) and 8081 (gRPC); TorchServe answers it on 8085.
    assert inference[1] == management[1] == 8085
    # The kserve-torchserve runtime announces 8082 for Prometheus; a scraper must reach it.
    assert metrics[1] == 8082 and metrics[0] == "0.0.0.0"


def test_token_auth_off_only_behind_loopback(cluster):
    """Token auth is off in the cluster (the wrapper sends no token); the stated mitigation is
    that TorchServe's inference and management APIs listen on loopback only."""
    if cluster.get("disable_token_authorization", "false").lower() == "true":
        for key in ("inference_address", "management_address"):
            assert host_port(cluster[key])[0] == "127.0.0.1", key
        for key in ("grpc_inference_address", "grpc_management_address"):
            assert cluster.get(key, "127.0.0.1") == "127.0.0.1", key
    assert cluster.get("enable_model_api", "false").lower() == "false"


def test_config_snapshot_names_the_projects_archives(cluster):
    models = snapshot_models(cluster)
    assert set(models) <= PROJECT_MODELS, set(models) - PROJECT_MODELS
    count = 0
    for name, versions in models.items():
        assert versions, name
        assert sum(bool(v.get("defaultVersion")) for v in versions.values()) == 1, name
        for version, entry in versions.items():
            count += 1
            match = ARCHIVE_RE.match(entry["marName"])
            assert match, entry["marName"]
            assert (match["name"], match["version"]) == (name, version), entry["marName"]
    assert json.loads(cluster["model_snapshot"])["modelCount"] == count
    # load_models would be ignored beside a snapshot, and the wrapper only reads the snapshot.
    assert "load_models" not in cluster


def test_config_serves_afd_classifier(cluster):
    assert "afd_classifier" in snapshot_models(cluster)


def test_config_uses_the_v1_envelope_with_batches_of_one(cluster):
    assert cluster["service_envelope"] == "kserve"
    # With enable_envvars_config on, TS_SERVICE_ENVELOPE and any TS_* variable would override this file.
    assert cluster.get("enable_envvars_config", "false").lower() == "false"
    for name, versions in snapshot_models(cluster).items():
        for entry in versions.values():
            # The v1 envelope reads only the first request of a batch.
            assert entry["batchSize"] == 1, name


def test_config_keeps_the_local_limits_and_metrics(cluster):
    local = read_properties(LOCAL_CONFIG)
    for key in SHARED_LIMITS:
        assert key in local, key
        assert cluster.get(key) == local[key], key
    assert cluster["metrics_mode"] == "prometheus" == local["metrics_mode"]


def test_readme_canary_edit_is_well_defined():
    """README.md derives the canary's config by replacing afd_classifier's snapshot entry
    (version key and archive name); both strings must occur exactly once."""
    text = CLUSTER_CONFIG.read_text()
    assert text.count('"afd_classifier":{"1.0":') == 1
    assert text.count("afd_classifier.1.0.mar") == 1
    canary_text = text.replace('"afd_classifier":{"1.0":', '"afd_classifier":{"2.0":').replace(
        "afd_classifier.1.0.mar", "afd_classifier.2.0.mar")
    entry = snapshot_models(parse_properties(canary_text))["afd_classifier"]
    assert list(entry) == ["2.0"] and entry["2.0"]["marName"] == "afd_classifier.2.0.mar"
