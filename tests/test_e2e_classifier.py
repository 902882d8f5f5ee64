"""End to end: the built classifier archives served by a real TorchServe on free ports."""

import io
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image
from skimage import data

from afdserve.packaging.archive import CLASSIFIERS, build_classifier_archive
from afdserve.evaluation.accuracy import service_from_archive

pytestmark = pytest.mark.e2e
# The AFD classifier and its control; restore_classify is tested with the restorer (test_e2e_restorer).
SPECS = {name: CLASSIFIERS[name] for name in ("afd_classifier", "lite0_baseline")}
MODELS = {name: f"{name}.{spec.version}.mar" for name, spec in SPECS.items()}


def jpeg(array, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=quality)
    return out.getvalue()


PHOTOS = {
    "chelsea_q31": jpeg(data.chelsea(), 31),
    "coffee_q10": jpeg(data.coffee(), 10),
    "astronaut_q75": jpeg(data.astronaut(), 75),
    "rocket_q50": jpeg(data.rocket(), 50),
}
JUNK = {
    "text": b"this is not an image",
    "truncated": PHOTOS["chelsea_q31"][: len(PHOTOS["chelsea_q31"]) // 3],
    "empty-ish": b"\xff\xd8",
}


@pytest.fixture(scope="module")
def model_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("model_store")
    for spec in SPECS.values():
        build_classifier_archive(spec, store)
    return store


@pytest.fixture(scope="module")
def server(model_store, torchserve_session_factory):
    return torchserve_session_factory(model_store, MODELS)


@pytest.fixture(scope="module")
def in_process(model_store):
    """The services the handler runs, loaded in this process from the same archives."""
    with tempfile.TemporaryDirectory() as tmp:
        yield {name: service_from_archive(model_store / mar, Path(tmp) / name) for name, mar in MODELS.items()}


def predict(server, model, body, headers=None):
    headers = server.inference_headers() if headers is None else headers
    return requests.put(f"{server.inference_url}/predictions/{model}", data=body, headers=headers, timeout=60)


def assert_same_answer(served: dict, expected: dict):
    assert served["model"] == expected["model"] and served["version"] == expected["version"]
    assert served["jpeg_quality"] == expected["jpeg_quality"]
    assert served["top_k"][0]["index"] == expected["top_k"][0]["index"]
    expected_probs = {e["index"]: e["probability"] for e in expected["top_k"]}
    for entry in served["top_k"]:
        if entry["index"] in expected_probs:  # near-ties may swap places 4 and 5 across batch sizes
            assert entry["probability"] == pytest.approx(expected_probs[entry["index"]], abs=1e-4)


@pytest.mark.parametrize("model", list(MODELS))
def test_answers_top5_json_equal_to_in_process(server, in_process, model):
    response = predict(server, model, PHOTOS["chelsea_q31"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["model"] == model
    assert body["version"] == SPECS[model].version
    assert body["jpeg_quality"] == 31
    assert len(body["top_k"]) == 5
    assert set(body["top_k"][0]) == {"index", "synset", "label", "probability"}
    probs = [e["probability"] for e in body["top_k"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert body["top_k"][0]["label"] in {"tabby", "tiger_cat", "Egyptian_cat"}
    expected = in_process[model].handle([PHOTOS["chelsea_q31"]])[0]
    assert_same_answer(body, expected.json())


def test_concurrent_requests_are_batched_and_junk_fails_alone(server, in_process):
    bodies = [(name, payload) for name, payload in {**PHOTOS, **JUNK}.items()] * 6
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda item: predict(server, "afd_classifier", item[1]), bodies))
    expected = {name: in_process["afd_classifier"].handle([payload])[0].json() for name, payload in PHOTOS.items()}
    for (name, _), response in zip(bodies, responses):
        if name in JUNK:
            assert 400 <= response.status_code < 500, (name, response.status_code)
            assert response.json()["error"]
        else:
            assert response.status_code == 200, (name, response.text)
            assert_same_answer(response.json(), expected[name])
    log = (server.workdir / "logs" / "model_log.log").read_text()
    batches = [(int(n), int(bad)) for n, bad in
               re.findall(r"batch of (\d+) requests: \d+ answered, (\d+) rejected", log)]
    assert max(n for n, _ in batches) > 1, batches
    # Junk shared a batch with good requests, and the good ones were still answered (above).
    assert any(0 < bad < n for n, bad in batches), batches


def test_key_is_required(server):
    for headers in ({}, {"Authorization": "Bearer not-the-key"}):
        response = predict(server, "lite0_baseline", PHOTOS["coffee_q10"], headers=headers)
        assert response.status_code in (400, 401, 403), response.status_code
    models = requests.get(f"{server.management_url}/models", timeout=10)
    assert models.status_code in (400, 401, 403)


def test_every_model_is_ready_with_its_version(server):
    for model, spec in SPECS.items():
        described = requests.get(f"{server.management_url}/models/{model}",
                                 headers=server.management_headers(), timeout=10).json()[0]
        assert described["modelVersion"] == spec.version
        assert described["batchSize"] == spec.serving.batch_size
        assert described["maxBatchDelay"] == spec.serving.max_batch_delay_ms
        assert len(described["workers"]) == spec.serving.workers
        assert all(w["status"] == "READY" for w in described["workers"])
    # Each worker set the torch threads its archive asks for (or kept torch's default).
    log = (server.workdir / "logs" / "model_log.log").read_text()
    for model, spec in SPECS.items():
        threads = re.findall(rf"{model} {re.escape(spec.version)} ready on cpu with (\d+) torch threads", log)
        assert threads, model
        assert spec.serving.threads is None or {int(t) for t in threads} == {spec.serving.threads}, threads


def test_multipart_and_json_base64_bodies(server, in_process):
    import base64

    expected = in_process["lite0_baseline"].handle([PHOTOS["coffee_q10"]])[0].json()
    url = f"{server.inference_url}/predictions/lite0_baseline"
    form = requests.post(url, files={"file": ("coffee.jpg", PHOTOS["coffee_q10"], "image/jpeg")},
                         headers=server.inference_headers(), timeout=60)
    assert form.status_code == 200, form.text
    assert_same_answer(form.json(), expected)
    encoded = base64.b64encode(PHOTOS["coffee_q10"]).decode()
    as_json = requests.post(url, json={"image": encoded}, headers=server.inference_headers(), timeout=60)
    assert as_json.status_code == 200, as_json.text
    assert_same_answer(as_json.json(), expected)
    no_image = requests.post(url, json={"text": "hello"}, headers=server.inference_headers(), timeout=60)
    assert no_image.status_code == 400 and "base64" in no_image.json()["error"]
