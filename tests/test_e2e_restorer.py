"""End to end: the restorer archive and restore-then-classify served by a real TorchServe."""

import dataclasses
import io
import json
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import torch
import yaml
from PIL import Image
from skimage import data

from afdserve.packaging.archive import (CLASSIFIERS, RESTORER_SERVING, RestorerArchive, build_classifier_archive,
                                       build_restorer_archive)
from afdserve.packaging.manifest import archive_file_name
from afdserve.imaging.decode import decode_image
from afdserve.models.swinir import SwinIR, SwinIRConfig, load_swinir_checkpoint
from afdserve.serving.restoration import TileSpec
from afdserve.serving.restorer_service import RestorerService

pytestmark = pytest.mark.e2e

# A tiny random SwinIR keeps the test fast; what is tested is the serving, not the restoration.
TINY = SwinIRConfig(embed_dim=16, depths=(1, 1), num_heads=(2, 2), window_size=8, img_size=16,
                    drop_path_rate=0.0)
TILE, OVERLAP = 64, 16
MAX_PIXELS = 200_000


def jpeg(array, quality: int = 20) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny_swinir.pth"
    # The official checkpoints' shape: the state dict under "params".
    torch.save({"params": SwinIR(TINY).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def model_store(tmp_path_factory, tiny_weights):
    store = tmp_path_factory.mktemp("model_store")
    build_restorer_archive(RestorerArchive("swinir_restorer", "0.9", tiny_weights, tile_size=TILE,
                                           tile_overlap=OVERLAP, max_pixels=MAX_PIXELS), store)
    build_classifier_archive(CLASSIFIERS["restore_classify"], store)
    return store


@pytest.fixture(scope="module")
def server(model_store, torchserve_session_factory):
    return torchserve_session_factory(model_store, {"swinir_restorer": "swinir_restorer.0.9.mar",
                                                    "restore_classify": archive_file_name(
                                                        "restore_classify", CLASSIFIERS["restore_classify"].version)})


@pytest.fixture(scope="module")
def in_process(tiny_weights):
    # In the archive's precision (auto: bfloat16 on a CPU that has it), as the server restores.
    return RestorerService(load_swinir_checkpoint(tiny_weights), "swinir_restorer", "0.9",
                           max_pixels=MAX_PIXELS, tiles=TileSpec(size=TILE, overlap=OVERLAP),
                           precision=RESTORER_SERVING.cpu_precision)


def restore_request(server, body, headers=None):
    return requests.put(f"{server.inference_url}/predictions/swinir_restorer", data=body,
                        headers={**server.inference_headers(), **(headers or {})}, timeout=120)


def test_archive_holds_a_plain_state_dict_and_the_config(model_store, tmp_path):
    with zipfile.ZipFile(model_store / "swinir_restorer.0.9.mar") as z:
        z.extractall(tmp_path)
    settings = yaml.safe_load((tmp_path / "model-config.yaml").read_text())["afdserve"]
    # Inferred from the weights' shapes (drop_path_rate, training only, is not in them).
    inferred = dataclasses.replace(SwinIRConfig.from_record(settings["swinir"]), drop_path_rate=0.0)
    assert inferred == TINY
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert "params" not in state and "conv_first.weight" in state


@pytest.mark.parametrize("size", [(45, 61), (200, 150)])  # one piece; tiled (larger than 64)
def test_png_out_same_size_and_pixels_as_in_process(server, in_process, size):
    body = jpeg(data.chelsea()[: size[1], : size[0]])
    r = restore_request(server, body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    served = Image.open(io.BytesIO(r.content))
    assert served.size == size and served.mode == "RGB"
    expected = Image.open(io.BytesIO(in_process.handle([body])[0].body))
    assert np.array_equal(np.asarray(served), np.asarray(expected))


def test_jpeg_out_at_the_asked_quality_by_header_or_form_field(server):
    body = jpeg(data.coffee()[:100, :120])
    by_header = restore_request(server, body, headers={"X-Output-Format": "jpeg", "X-JPEG-Quality": "80"})
    # TorchServe 0.12 does not hand query parameters to the handler; form fields it does.
    by_form = requests.post(f"{server.inference_url}/predictions/swinir_restorer",
                            files={"data": ("photo.jpg", body, "image/jpeg")},
                            data={"format": "jpeg", "quality": "55"},
                            headers=server.inference_headers(), timeout=120)
    for r, quality in ((by_header, 80), (by_form, 55)):
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg"
        decoded = decode_image(r.content)
        assert decoded.format == "JPEG" and decoded.quality == quality and decoded.image.size == (120, 100)


def test_bad_requests_get_their_own_4xx_and_the_rest_are_served(server):
    good = jpeg(data.astronaut()[:64, :64])
    cases = [(good, {}, 200), (b"not an image at all", {}, 400), (good, {"X-Output-Format": "tiff"}, 400),
             (jpeg(data.astronaut()), {}, 413),  # 512x512 > MAX_PIXELS
             (good, {}, 200), (good[: len(good) // 2], {}, 400)]
    with ThreadPoolExecutor(len(cases)) as pool:
        replies = list(pool.map(lambda c: restore_request(server, c[0], headers=c[1]), cases))
    assert [r.status_code for r in replies] == [c[2] for c in cases]
    for r in replies:
        if r.status_code != 200:
            assert "error" in r.json()
    assert restore_request(server, good).status_code == 200  # the worker is still serving


def test_restore_then_classify_answers_top5(server):
    r = requests.put(f"{server.inference_url}/predictions/restore_classify", data=jpeg(data.chelsea(), 10),
                     headers=server.inference_headers(), timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "restore_classify" and body["jpeg_quality"] == 10
    assert len(body["top_k"]) == 5
    # scikit-image's Chelsea is a tabby cat: ImageNet's cat classes are 281-285.
    assert body["top_k"][0]["index"] in range(281, 286), json.dumps(body["top_k"][:2])
