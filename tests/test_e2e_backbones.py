"""End to end for a user's own classifier: a tiny timm CNN (random weights saved as a state dict)
trained with an AFD module, built with `afdserve build --name`, served by a real TorchServe, and
answering as afd_classifier does, with the in-process answer."""

import io
import json
import tempfile
import zipfile
from pathlib import Path

import pytest
import requests
import yaml
from PIL import Image
from skimage import data

from afdserve.cli import main
from afdserve.evaluation.accuracy import service_from_archive
from tests.conftest import TINY_INPUT, TINY_TIMM
from tests.test_e2e_classifier import assert_same_answer

pytestmark = pytest.mark.e2e
MODEL, VERSION = "tiny_afd", "0.1"


def jpeg(array, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=quality)
    return out.getvalue()


PHOTOS = {"chelsea_q20": jpeg(data.chelsea(), 20), "coffee_q60": jpeg(data.coffee(), 60)}


@pytest.fixture(scope="module")
def run(labelled_photos, tiny_timm_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--backbone", f"timm:{TINY_TIMM}", "--backbone-weights", str(tiny_timm_checkpoint),
                 "--input-size", str(TINY_INPUT), "--data", str(labelled_photos), "--out", str(out),
                 "--steps", "1", "--batch-size", "2", "--width", "4", "--workers", "0", "--warmup", "1",
                 "--no-progress", "--threads", "1", "--val-qualities", ""]) == 0
    return out


@pytest.fixture(scope="module")
def model_store(run, tmp_path_factory):
    store = tmp_path_factory.mktemp("model_store")
    assert main(["build", "--name", MODEL, "--version", VERSION, "--weights", str(run / "afd_module.pt"),
                 "--model-store", str(store)]) == 0
    return store


@pytest.fixture(scope="module")
def server(model_store, torchserve_session_factory):
    return torchserve_session_factory(model_store, {MODEL: f"{MODEL}.{VERSION}.mar"})


@pytest.fixture(scope="module")
def in_process(model_store):
    with tempfile.TemporaryDirectory() as tmp:
        yield service_from_archive(model_store / f"{MODEL}.{VERSION}.mar", Path(tmp))


def predict(server, body):
    return requests.put(f"{server.inference_url}/predictions/{MODEL}", data=body,
                        headers=server.inference_headers(), timeout=60)


def test_archive_records_the_backbone(model_store, tiny_timm_checkpoint):
    from afdserve.models.backbones import sha256_of

    manifest = json.loads((model_store / f"{MODEL}.{VERSION}.manifest.json").read_text())
    backbone = manifest["backbone"]
    assert backbone["name"] == f"timm:{TINY_TIMM}" and backbone["input_size"] == TINY_INPUT
    assert backbone["weights"]["sha256"] == sha256_of(tiny_timm_checkpoint)
    assert manifest["record"]["backbone"] == backbone  # the training record, as trained
    with zipfile.ZipFile(model_store / f"{MODEL}.{VERSION}.mar") as z:
        settings = yaml.safe_load(z.read("model-config.yaml"))["afdserve"]
    assert settings["backbone"] == backbone and settings["afd"]["insert_after"] == "bn1"


@pytest.mark.parametrize("photo", list(PHOTOS))
def test_answers_like_afd_classifier_and_in_process(server, in_process, photo):
    response = predict(server, PHOTOS[photo])
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"model", "version", "jpeg_quality", "top_k"}
    assert (body["model"], body["version"], body["jpeg_quality"]) == (MODEL, VERSION, int(photo[-2:]))
    assert len(body["top_k"]) == 5 and all(set(e) == {"index", "synset", "label", "probability"} for e in body["top_k"])
    probs = [e["probability"] for e in body["top_k"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert_same_answer(body, in_process.handle([PHOTOS[photo]])[0].json())


def test_junk_is_refused_alone(server):
    response = predict(server, b"this is not an image")
    assert 400 <= response.status_code < 500 and response.json()["error"]
    assert predict(server, PHOTOS["coffee_q60"]).status_code == 200
