"""Both handlers under bad input: the corpus of tests/hostile_corpus.py, in-process and served.

* In-process (fast, no server): every case through ClassifierService and RestorerService alone and
  the whole corpus as one batch: each valid image answered, each invalid one its own 4xx with a
  JSON ``error`` that says what was wrong.
* End to end (``-m e2e``): one TorchServe serving afd_classifier and a tiny random SwinIR restorer;
  every case over HTTP to both models, a few at a time; the workers keep their pids and their
  memory stays under ``WORKER_RSS_BOUND`` (the measured peak is printed: run with ``-s``).
* Fuzz: decode_image (and the preprocessing of what it decodes) on mutated valid files and on
  arbitrary bytes raises nothing but ImageDecodeError with status 400/413/415, and never hangs.
  The default is 1,500 examples per test (about 10 s). A longer run by hand (200,000 examples per
  test took 9 minutes on 2 busy cores, with no failure)::

      AFDSERVE_FUZZ_EXAMPLES=200000 timeout 7200 .venv/bin/python -m pytest -q \\
          tests/test_hostile_inputs.py -k fuzz --hypothesis-show-statistics
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from afdserve.experiments.cost_bombs import cost_bombs
from afdserve.imaging.budget import CpuBudget
from afdserve.imaging.decode import ImageDecodeError, decode_image
from afdserve.imaging.structure import StructureLimits, check_structure
from afdserve.imaging.preprocess import prepare
from afdserve.serving.restoration import TileSpec
from afdserve.serving.classifier_service import ClassifierService
from afdserve.serving.requests import request_bytes
from afdserve.serving.restorer_service import DEFAULT_RESTORER_MAX_PIXELS, RestorerService
from hostile_corpus import (
    CLASSIFIER_MAX_PIXELS,
    HANDLERS,
    RESTORER_MAX_PIXELS,
    Case,
    _corpus,
    corpus,
    jpeg,
    jpeg_segments,
    png_chunk,
    random_bytes,
    small_photo,
    torchserve_row,
)
from images import encode, exif_orientation

# Hostile inputs make Pillow warn (bomb-sized headers under our own limit, bogus EXIF): expected.
pytestmark = [pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
              pytest.mark.filterwarnings("ignore:Tag data larger than file:UserWarning"),
              pytest.mark.filterwarnings("ignore:Possibly corrupt EXIF:UserWarning"),
              pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")]

CASES = corpus()
BY_NAME = {case.name: case for case in CASES}
CATEGORIES = {"empty", "random", "text", "corrupt jpeg", "header only", "bomb", "metadata", "animation",
              "archive", "svg", "json", "multipart", "valid", "cost"}

# =============================================================================== the corpus itself


def test_corpus_covers_the_issue():
    assert len(CASES) >= 35
    assert len(BY_NAME) == len(CASES), "case names must be unique"
    assert {case.category for case in CASES} == CATEGORIES
    for case in CASES:
        assert set(case.expected) == set(HANDLERS), case.name
        for status in case.expected.values():
            assert status in (200, 400, 413, 415), case.name
        assert case.valid == any(s == 200 for s in case.expected.values()), case.name
    large = [case.name for case in CASES if len(case.body) >= 2_000_000]
    assert large == [], large  # the very large photo is large in pixels, not on the wire
    photo = BY_NAME["jpeg_4000x3000_photo"]
    assert photo.expected == {"classifier": 200, "restorer": 413}
    assert len(photo.body) < 16 * 2**20  # under the frontend's max_request_size


def test_corpus_is_deterministic():
    def digest(cases):
        return [(c.name, hashlib.sha256(c.body).hexdigest()) for c in cases]

    assert digest(_corpus.__wrapped__()) == digest(CASES)


# ============================================================================== in-process services

# A tiny random SwinIR keeps this fast: what is tested is the serving path, not the restoration.
TINY_SWINIR = dict(embed_dim=16, depths=(1, 1), num_heads=(2, 2), window_size=8, img_size=16, drop_path_rate=0.0)
TILE, OVERLAP = 64, 16


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # On a machine whose cores are busy, two OpenMP threads wait on each other at every op and a
    # small forward takes seconds instead of milliseconds. One thread keeps these tests fast.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def classifier() -> ClassifierService:
    """afd_classifier as its archive serves it: the afd_v1 module on the ImageNet Lite0, fused."""
    from afdserve.packaging.archive import CLASSIFIERS, PACKAGE_DIR
    from afdserve.models.classifier import build_classifier, fuse_for_deployment

    spec = CLASSIFIERS["afd_classifier"]
    model = build_classifier(spec.afd_config(), pretrained=True)
    model.afd.load_state_dict(torch.load(spec.afd_weights(), map_location="cpu", weights_only=True))
    labels = json.loads((PACKAGE_DIR / "data" / "index_to_name.json").read_text())
    return ClassifierService(fuse_for_deployment(model), labels, spec.name, spec.version)


def tiny_swinir():
    from afdserve.models.swinir import SwinIR, SwinIRConfig

    torch.manual_seed(0)
    return SwinIR(SwinIRConfig(**TINY_SWINIR)).eval()


@pytest.fixture(scope="module")
def restorer() -> RestorerService:
    assert DEFAULT_RESTORER_MAX_PIXELS == RESTORER_MAX_PIXELS  # the corpus's 413s assume it
    return RestorerService(tiny_swinir(), "swinir_restorer", "0.9", tiles=TileSpec(size=TILE, overlap=OVERLAP, whole=0))


@pytest.fixture(scope="module")
def services(classifier, restorer) -> dict:
    return {"classifier": classifier, "restorer": restorer}


def upright_size(case: Case) -> tuple[int, int]:
    return decode_image(request_bytes(torchserve_row(case))).image.size


def run_in_process(service, handler: str, rows: list) -> list[tuple[int, str, bytes]]:
    """(status, content type, body bytes) per row, as the handler would send them."""
    return [(r.status, r.content_type, r.body) for r in service.handle(rows, [{}] * len(rows))]


def check_answer(handler: str, case: Case, status: int, content_type: str, body: bytes):
    expected = case.expected[handler]
    assert status == expected, f"{case.name} to the {handler}: {status} {body[:300]!r}"
    if status != 200:
        assert content_type.startswith("application/json"), content_type
        error = json.loads(body)["error"]
        assert isinstance(error, str) and error.strip(), body
        assert case.says_for(handler).lower() in error.lower(), error
    elif handler == "classifier":
        answer = json.loads(body)
        assert answer["model"] == "afd_classifier" and len(answer["top_k"]) == 5, answer
    else:
        assert content_type == "image/png", content_type
        assert Image.open(io.BytesIO(body)).size == upright_size(case)


def _in_process_params():
    for handler in HANDLERS:
        for case in CASES:
            yield pytest.param(handler, case, id=f"{handler}-{case.name}")


@pytest.mark.parametrize("handler, case", list(_in_process_params()))
def test_each_case_alone(services, handler, case):
    [(status, content_type, body)] = run_in_process(services[handler], handler, [torchserve_row(case)])
    check_answer(handler, case, status, content_type, body)


def test_whole_corpus_through_the_reduced_decode_of_the_plain_backbone(classifier):
    """lite0_baseline decodes large JPEGs at reduced scale: a different decoder path, same statuses."""
    from afdserve.models.classifier import build_classifier, fuse_for_deployment

    baseline = ClassifierService(fuse_for_deployment(build_classifier(None, pretrained=True)), classifier.labels,
                                 "lite0_baseline", "1.0")
    answers = baseline.handle([torchserve_row(case) for case in CASES])
    assert [a.status for a in answers] == [case.expected["classifier"] for case in CASES]


def test_whole_corpus_prepared_side_by_side(classifier):
    """--prepare-threads 2: a batch's images prepared on two threads get the statuses and answers
    they get one at a time, in the order they came."""
    side_by_side = ClassifierService(classifier.model, classifier.labels, classifier.model_name, classifier.version,
                                     prepare_threads=2)
    rows = [torchserve_row(case) for case in CASES]
    got, want = side_by_side.handle(rows), classifier.handle(rows)
    assert [a.status for a in got] == [case.expected["classifier"] for case in CASES]
    assert [a.body for a in got] == [a.body for a in want]


def test_whole_corpus_through_the_device_decode(classifier):
    """--gpu-decode workers decode JPEGs with torchvision and prepare them with torch (here on the
    CPU): the same statuses, and for valid images the same top-1 as the Pillow path."""
    on_device = ClassifierService(classifier.model, classifier.labels, classifier.model_name, classifier.version,
                                  decode_on_device=True)
    rows = [torchserve_row(case) for case in CASES]
    got, want = on_device.handle(rows), classifier.handle(rows)
    assert [a.status for a in got] == [case.expected["classifier"] for case in CASES]
    for case, a, b in zip(CASES, got, want):
        if a.status == 200:
            assert a.json()["top_k"][0]["index"] == b.json()["top_k"][0]["index"], case.name


@pytest.mark.parametrize("handler", HANDLERS)
def test_whole_corpus_as_one_batch(services, handler):
    """Bad requests fail alone: in one batch every case gets the status it gets alone."""
    cases = CASES
    answers = run_in_process(services[handler], handler, [torchserve_row(case) for case in cases])
    assert [a[0] for a in answers] == [case.expected[handler] for case in cases]
    for case, (status, content_type, body) in zip(cases, answers):
        check_answer(handler, case, status, content_type, body)


def test_restorer_batch_with_tiny_images_answers_the_others(restorer):
    # A 1x1 image, or the 64x2 edge tiles of a 3000x2 one, are thinner than SwinIR's reflect
    # padding allows: their edges are repeated first, and the batch around them is served.
    cases = [BY_NAME["jpeg_baseline"], BY_NAME["jpeg_1x1"], BY_NAME["random_4k"], BY_NAME["jpeg_3000x2"]]
    answers = run_in_process(restorer, "restorer", [torchserve_row(case) for case in cases])
    assert [a[0] for a in answers] == [200, 200, 400, 200]


# ======================================================================= cost limits and budgets


@pytest.mark.parametrize("bomb", cost_bombs(), ids=lambda bomb: bomb.name)
def test_cost_bombs_are_refused_before_decoding(bomb):
    start = time.process_time()
    with pytest.raises(ImageDecodeError) as refused:
        decode_image(bomb.body)
    assert time.process_time() - start < 0.2  # each held a worker for seconds before the limits
    assert refused.value.status == 413 and bomb.says in refused.value.message


def test_structure_limits_are_counted_as_real_encoders_write():
    progressive = jpeg(progressive=True)  # libjpeg's script: 10 scans
    check_structure(progressive, StructureLimits(jpeg_scans=10))
    with pytest.raises(ImageDecodeError, match="more than 9 scans"):
        check_structure(progressive, StructureLimits(jpeg_scans=9))
    pixels = 96 * 64
    check_structure(progressive, StructureLimits(jpeg_scan_pixels=10 * pixels))
    with pytest.raises(ImageDecodeError, match="scan-pixels"):
        check_structure(progressive, StructureLimits(jpeg_scan_pixels=10 * pixels - 1))
    # Stuffed 0xFF bytes and restart markers in the entropy-coded data are not segments.
    stuffed = jpeg(Image.new("RGB", (64, 64), (255, 255, 255)), quality=100)
    check_structure(stuffed, StructureLimits(jpeg_segments=len(jpeg_segments(stuffed)) + 1))
    png = encode(small_photo(), "PNG")
    check_structure(png, StructureLimits(png_chunks=3))  # IHDR, IDAT, IEND
    with pytest.raises(ImageDecodeError, match="more than 2 chunks"):
        check_structure(png, StructureLimits(png_chunks=2))
    for not_walked in (b"", b"\xff\xd8", b"\xff\xd8GARBAGE", b"RIFF", random_bytes(5000, 1)):
        check_structure(not_walked, StructureLimits(jpeg_segments=0, png_chunks=0))


def test_decode_budget_stops_what_the_structure_limits_let_through(monkeypatch):
    """Without its structure limits, the 2000-scan bomb (49 s to decode) is stopped by the budget."""
    import afdserve.imaging.decode as decode_module

    monkeypatch.setattr(decode_module, "check_structure", lambda data: None)
    bomb = next(b for b in cost_bombs() if b.name == "jpeg_progressive_2000_scans_36mp")
    start = time.thread_time()
    with pytest.raises(ImageDecodeError) as stopped:
        decode_image(bomb.body, budget=CpuBudget(0.5))
    # Pillow reads 1 KiB at a time: a block holds a few dozen of these scans, ~40 ms each.
    assert time.thread_time() - start < 3.0
    assert stopped.value.status == 413 and "CPU budget of 0.5 s" in stopped.value.message


def test_a_request_over_its_budget_fails_alone(classifier):
    tight = ClassifierService(classifier.model, classifier.labels, classifier.model_name, classifier.version,
                              decode_budget_s=0.05)
    large, small = BY_NAME["jpeg_4000x3000_photo"], BY_NAME["jpeg_baseline"]  # 0.2 s to decode; 1 ms
    tight.handle([torchserve_row(small)])  # warm: the first DCT builds its cached basis
    answers = tight.handle([torchserve_row(large), torchserve_row(small)])
    assert [a.status for a in answers] == [413, 200]
    assert "CPU budget" in answers[0].json()["error"]


def test_restorer_budget_stops_tiling_and_then_refuses_upfront():
    service = RestorerService(tiny_swinir(), "swinir_restorer", "0.9", tiles=TileSpec(size=TILE, overlap=OVERLAP, whole=0),
                              restore_budget_s=1e-4)
    tiled, one_tile = jpeg(small_photo(size=(400, 300))), jpeg(small_photo(size=(48, 32)))
    replies = service.handle([tiled, one_tile], [{}, {}])
    assert [r.status for r in replies] == [413, 200]
    assert "restoring the image" in replies[0].json()["error"]

    # Once a tiled image has been restored, the rate it took refuses what would overrun, before any work.
    service.restore_cost.budget_s = 600.0
    assert [r.status for r in service.handle([tiled], [{}])] == [200]
    cost = service.restore_cost.s_per_tile_pixel * service.restore_cost.tile_pixels(900, 1200)
    service.restore_cost.budget_s = cost / 2  # half what a 1200x900 image would take
    start = time.process_time()
    [reply] = service.handle([jpeg(small_photo(size=(1200, 900)))], [{}])
    assert reply.status == 413 and "would take about" in reply.json()["error"]
    assert time.process_time() - start < cost / 4


# ================================================================================== end to end

WORKER_RSS_BOUND = int(2.5 * 2**30)  # bytes, per worker process
SERVED = {"classifier": "afd_classifier", "restorer": "swinir_restorer"}
CONCURRENCY = 4


@pytest.fixture(scope="module")
def model_store(tmp_path_factory):
    from afdserve.packaging.archive import CLASSIFIERS, RestorerArchive, build_classifier_archive, build_restorer_archive

    store = tmp_path_factory.mktemp("hostile_store")
    weights = tmp_path_factory.mktemp("hostile_weights") / "tiny_swinir.pth"
    torch.save({"params": tiny_swinir().state_dict()}, weights)
    # No max_pixels: the restorer keeps its default 4 MP limit, which the corpus's 413s assume.
    build_restorer_archive(RestorerArchive("swinir_restorer", "0.9", weights, tile_size=TILE,
                                           tile_overlap=OVERLAP), store)
    build_classifier_archive(CLASSIFIERS["afd_classifier"], store)
    return store


@pytest.fixture(scope="module")
def server(model_store, torchserve_session_factory):
    return torchserve_session_factory(model_store, {"afd_classifier": "afd_classifier.1.0.mar",
                                                    "swinir_restorer": "swinir_restorer.0.9.mar"})


def worker_pids(server) -> dict[str, list[int]]:
    import requests

    pids = {}
    for handler, model in SERVED.items():
        described = requests.get(f"{server.management_url}/models/{model}",
                                 headers=server.management_headers(), timeout=30).json()[0]
        assert all(w["status"] == "READY" for w in described["workers"]), described["workers"]
        pids[handler] = sorted(int(w["pid"]) for w in described["workers"])
    return pids


class PeakRSS:
    """Samples the resident memory of some processes in a background thread; keeps the peak."""

    def __init__(self, pids: dict[str, list[int]], interval: float = 0.02):
        import psutil

        self.procs = {h: [psutil.Process(p) for p in ps] for h, ps in pids.items()}
        self.peak = {h: 0 for h in pids}
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        for handler, procs in self.procs.items():
            for proc in procs:
                try:
                    self.peak[handler] = max(self.peak[handler], proc.memory_info().rss)
                except Exception:  # a dead worker shows up in the pid check instead
                    pass

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def send(server, handler: str, case: Case):
    import requests

    headers = dict(server.inference_headers())
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    url = f"{server.inference_url}/predictions/{SERVED[handler]}"
    return requests.put(url, data=case.body, headers=headers, timeout=180)


def check_served(handler: str, case: Case, response):
    check_answer(handler, case, response.status_code, response.headers.get("content-type", ""),
                 response.content)


@pytest.mark.e2e
def test_served_corpus_both_handlers(server):
    before = worker_pids(server)
    jobs = [(handler, case) for case in CASES for handler in HANDLERS]
    start = time.perf_counter()
    with PeakRSS(before) as rss, ThreadPoolExecutor(CONCURRENCY) as pool:
        baseline = dict(rss.peak)
        responses = list(pool.map(lambda job: send(server, *job), jobs))
    seconds = time.perf_counter() - start
    failures = []
    for (handler, case), response in zip(jobs, responses):
        try:
            check_served(handler, case, response)
        except AssertionError as err:
            failures.append(f"{handler}/{case.name}: {err}")
    after = worker_pids(server)
    print(f"\n{len(jobs)} requests in {seconds:.1f} s, {CONCURRENCY} at a time; worker RSS before -> peak: "
          + ", ".join(f"{SERVED[h]} {baseline[h] / 2**20:.0f} -> {rss.peak[h] / 2**20:.0f} MiB" for h in HANDLERS)
          + f" (bound {WORKER_RSS_BOUND / 2**30:.1f} GiB)")
    assert failures == []
    assert after == before, "a worker died or was restarted"
    for handler in HANDLERS:
        assert rss.peak[handler] < WORKER_RSS_BOUND, (SERVED[handler], rss.peak[handler])


@pytest.mark.e2e
def test_served_oversized_body_is_refused_by_the_frontend(server):
    import requests

    before = worker_pids(server)
    body = bytes(17 * 2**20)  # over config.properties' max_request_size (16 MiB)
    response = requests.put(f"{server.inference_url}/predictions/afd_classifier", data=body,
                             headers=server.inference_headers(), timeout=120)
    assert response.status_code == 413, response.text[:300]
    assert worker_pids(server) == before


# ======================================================================================== fuzz

FUZZ_EXAMPLES = int(os.environ.get("AFDSERVE_FUZZ_EXAMPLES", "1500"))
SLOW_DECODE_S = 10.0  # one small body taking longer than this counts as a hang


def _fuzz_seeds() -> dict[str, bytes]:
    im = small_photo(size=(40, 28))
    rgba = im.convert("RGBA")
    return {
        "jpeg": encode(im, "JPEG", quality=80),
        "jpeg_progressive": encode(im, "JPEG", quality=60, progressive=True),
        "jpeg_grey": encode(im.convert("L"), "JPEG", quality=70),
        "jpeg_cmyk": encode(im.convert("CMYK"), "JPEG", quality=90),
        "jpeg_exif6": encode(im, "JPEG", quality=75, exif=exif_orientation(6)),
        "jpeg_444": encode(im, "JPEG", quality=95, subsampling=0),
        "png": encode(im, "PNG"),
        "png_rgba_text": encode(rgba, "PNG")[:33] + png_chunk(b"tEXt", b"k\x00v" * 20) + encode(rgba, "PNG")[33:],
        "png_palette": encode(im.quantize(8), "PNG", transparency=1),
        "png_grey16": encode(im.convert("L").convert("I;16"), "PNG"),
        "webp": encode(im, "WEBP", quality=70),
        "webp_lossless": encode(rgba, "WEBP", lossless=True),
    }


FUZZ_SEEDS = _fuzz_seeds()
_MUTATION = st.one_of(
    st.tuples(st.just("xor"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    st.tuples(st.just("set"), st.floats(0, 1, exclude_max=True), st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01])),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.floats(0, 1, exclude_max=True), st.integers(1, 64)),
    st.tuples(st.just("repeat"), st.floats(0, 1, exclude_max=True), st.integers(1, 200)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
)


def mutate(data: bytes, mutations) -> bytes:
    out = bytearray(data)
    for op, where, arg in mutations:
        if not out:
            break
        i = min(int(where * len(out)), len(out) - 1)
        if op == "xor":
            out[i] ^= arg
        elif op == "set":
            out[i] = arg
        elif op == "insert":
            out[i:i] = arg
        elif op == "delete":
            del out[i:i + arg]
        elif op == "repeat":  # duplicate a stretch: repeated markers, chunks, segments
            out[i:i] = out[i:i + arg]
        else:
            del out[i:]
    return bytes(out)


def decode_or_refuse(data: bytes, max_pixels: int):
    """The property: an ImageDecodeError with an HTTP status, or an RGB image the preprocessing takes."""
    start = time.perf_counter()
    try:
        decoded = decode_image(data, max_pixels=max_pixels)
    except ImageDecodeError as err:
        assert err.status in (400, 413, 415), (err.status, str(err))
        assert str(err).strip()
        event(f"refused {err.status}")
    else:
        event(f"decoded {decoded.format}")
        assert decoded.image.mode == "RGB"
        width, height = decoded.image.size
        assert 0 < width * height <= max_pixels
        assert len(decoded.image.tobytes()) == width * height * 3
        model_input = prepare(decoded)
        assert model_input.image.shape == (3, 224, 224) and model_input.dct.shape == (192, 28, 28)
        assert torch.isfinite(model_input.image).all() and torch.isfinite(model_input.dct).all()
    elapsed = time.perf_counter() - start
    assert elapsed < SLOW_DECODE_S, f"{len(data)} bytes took {elapsed:.1f} s"


_FUZZ_SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_FUZZ_SETTINGS
@given(seed=st.sampled_from(sorted(FUZZ_SEEDS)), mutations=st.lists(_MUTATION, min_size=1, max_size=8),
       max_pixels=st.sampled_from([RESTORER_MAX_PIXELS, CLASSIFIER_MAX_PIXELS]))
@example(seed="jpeg", mutations=[("truncate", 0.5, 0)], max_pixels=CLASSIFIER_MAX_PIXELS)
@example(seed="png", mutations=[("xor", 0.3, 0xFF)], max_pixels=CLASSIFIER_MAX_PIXELS)
def test_fuzz_mutated_files(seed, mutations, max_pixels):
    decode_or_refuse(mutate(FUZZ_SEEDS[seed], mutations), max_pixels)


_MAGICS = [b"", b"\xff\xd8\xff", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\x89PNG\r\n\x1a\n",
           b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"RIFF\xff\xff\x00\x00WEBPVP8X",
           b"RIFF\x10\x00\x00\x00WEBPVP8L/", b"GIF89a", b"<svg ", b"PK\x03\x04", b"%PDF-", b"BM"]


@_FUZZ_SETTINGS
@given(magic=st.sampled_from(_MAGICS), tail=st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes(magic, tail):
    decode_or_refuse(magic + tail, CLASSIFIER_MAX_PIXELS)
