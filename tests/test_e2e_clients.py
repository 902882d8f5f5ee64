"""End to end: how each common client sends an image to /predictions/afd_classifier, and what it
gets back from a real TorchServe 0.12 (docs/api.md has the same table for users).

Every row either gets the same top-5 JSON as a plain good request, or a 4xx whose message names
the fix. The one exception is TorchServe's own: a file's bytes sent as
``application/x-www-form-urlencoded`` (what ``curl --data-binary`` and urllib send by default)
are URL-decoded by the frontend before any handler runs and refused with 500
``ErrorDataDecoderException: Bad string '<part of the body>'``. Nothing in TorchServe 0.12 can
change that (no setting; a frontend plugin can only replace the whole predictions API), so those
rows pin it, and every client and example of ours sends an explicit Content-Type.

Browsers are emulated with http.client, byte for byte what ``fetch`` sends for a ``Blob`` body
and for ``FormData``; gRPC uses stubs generated from the installed TorchServe's own .proto.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image
from skimage import data

from afdserve.ops.client import Target, TorchServeClient
from afdserve.packaging.archive import CLASSIFIERS, build_classifier_archive

pytestmark = pytest.mark.e2e

MODEL = "afd_classifier"
SPEC = CLASSIFIERS[MODEL]
OCTET = "application/octet-stream"
FORM = "application/x-www-form-urlencoded"


def _jpeg(array, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _tiny_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


PHOTO = _jpeg(data.chelsea(), 31)
# Small enough to hold no '%': the frontend URL-decodes it without error and the handler sees it.
TINY_PNG = _tiny_png()


@pytest.fixture(scope="module")
def server(tmp_path_factory, torchserve_session_factory):
    store = tmp_path_factory.mktemp("model_store")
    build_classifier_archive(SPEC, store)
    return torchserve_session_factory(store, {MODEL: f"{MODEL}.{SPEC.version}.mar"})


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("photos") / "photo.jpg"
    path.write_bytes(PHOTO)
    return path


@pytest.fixture(scope="module")
def url(server):
    return f"{server.inference_url}/predictions/{MODEL}"


@pytest.fixture(scope="module")
def auth(server):
    return server.inference_headers()


@pytest.fixture(scope="module")
def good_answer(url, auth):
    """What the plain good request (raw bytes, explicit octet-stream) gets."""
    response = requests.put(url, data=PHOTO, headers={**auth, "Content-Type": OCTET}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def assert_good(status: int, body: bytes, expected: dict):
    assert status == 200, body[:300]
    served = json.loads(body)
    assert (served["model"], served["version"], served["jpeg_quality"]) == (MODEL, SPEC.version, 31)
    assert [e["index"] for e in served["top_k"]] == [e["index"] for e in expected["top_k"]]
    for got, want in zip(served["top_k"], expected["top_k"]):
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-4)


def assert_names_the_fix(status: int, body: bytes, expected_status: int = 415):
    assert status == expected_status, body[:300]
    message = json.loads(body)["error"]
    assert "Content-Type: application/octet-stream" in message, message


def assert_torchserve_form_refusal(status: int, body: bytes):
    """TorchServe's frontend refusing a file sent as a URL-encoded form (see the module doc)."""
    assert status == 500, body[:300]
    answer = json.loads(body)
    assert answer["type"] == "ErrorDataDecoderException" and answer["message"].startswith("Bad string"), answer


# -- curl ------------------------------------------------------------------------------------------


def curl(url: str, auth: dict, *args: str) -> tuple[int, bytes]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    headers = [arg for name, value in auth.items() for arg in ("-H", f"{name}: {value}")]
    done = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *headers, *args, url],
                          capture_output=True, timeout=60, check=True)
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), body


@pytest.mark.parametrize("extra", [[], ["-H", f"Content-Type: {OCTET}"]], ids=["no-type", "octet-stream"])
def test_curl_upload_file(url, auth, photo_file, good_answer, extra):
    # -T: a PUT that sends no Content-Type of its own (what `afdserve serve` prints, with the type).
    assert_good(*curl(url, auth, *extra, "-T", str(photo_file)), good_answer)


@pytest.mark.parametrize("content_type", ["image/jpeg", OCTET])
def test_curl_data_binary_with_a_type(url, auth, photo_file, good_answer, content_type):
    answer = curl(url, auth, "--data-binary", f"@{photo_file}", "-H", f"Content-Type: {content_type}")
    assert_good(*answer, good_answer)


def test_curl_data_binary_without_a_type_is_refused_by_torchserve(server, url, auth, photo_file, good_answer):
    # curl sends Content-Type: application/x-www-form-urlencoded here.
    assert_torchserve_form_refusal(*curl(url, auth, "--data-binary", f"@{photo_file}"))
    # One client's refusal leaves the server serving.
    assert_good(*curl(url, auth, "-T", str(photo_file)), good_answer)
    # The answer echoes a piece of the photo, but the logs keep the error without it (log4j2.xml).
    logged = b"".join(path.read_bytes() for path in server.log_dir.iterdir() if path.is_file())  # torchserve.out too
    assert b"Bad string: [request body not logged]" in logged and b"ErrorDataDecoderException" in logged
    assert b"JFIF" not in logged


def test_curl_form_file_field(url, auth, photo_file, good_answer):
    assert_good(*curl(url, auth, "-F", f"file=@{photo_file}"), good_answer)


def test_curl_form_base64_field(url, auth, tmp_path, good_answer):
    # A form that can only carry text: the image as base64 in a field named image (or data, b64).
    encoded = tmp_path / "photo.b64"
    encoded.write_text(base64.b64encode(PHOTO).decode())
    assert_good(*curl(url, auth, "--data-urlencode", f"image@{encoded}"), good_answer)
    # Not percent-encoded ('+' arrives as a space): still the same image.
    raw = tmp_path / "form.txt"
    raw.write_text("image=" + base64.b64encode(PHOTO).decode())
    assert_good(*curl(url, auth, "--data-binary", f"@{raw}"), good_answer)


def test_form_type_body_that_reaches_the_handler_names_the_fix(url, auth):
    """A file's bytes sent as a form that the frontend happens to decode (no '%' in it) reach the
    handler as mangled text fields; it refuses them with 415 and says what to send instead."""
    assert b"%" not in TINY_PNG
    response = requests.post(url, data=TINY_PNG, headers={**auth, "Content-Type": FORM}, timeout=60)
    assert_names_the_fix(response.status_code, response.content)


# -- Python clients --------------------------------------------------------------------------------


def test_requests_raw_body(url, auth, good_answer):
    # requests sends no Content-Type for a bytes body: TorchServe passes it on as raw bytes.
    for method in (requests.post, requests.put):
        response = method(url, data=PHOTO, headers=auth, timeout=60)
        assert "Content-Type" not in response.request.headers
        assert_good(response.status_code, response.content, good_answer)


@pytest.mark.parametrize("file", [("photo.jpg", PHOTO, "image/jpeg"), ("photo.jpg", PHOTO), PHOTO],
                         ids=["name-and-type", "name-only", "bytes-only"])
def test_requests_multipart(url, auth, good_answer, file):
    response = requests.post(url, files={"file": file}, headers=auth, timeout=60)
    assert_good(response.status_code, response.content, good_answer)


def test_urllib_bytes_body(url, auth, good_answer):
    def urlopen(headers):
        request = urllib.request.Request(url, data=PHOTO, headers={**auth, **headers})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    # urllib adds Content-Type: application/x-www-form-urlencoded to any request with a body.
    assert_torchserve_form_refusal(*urlopen({}))
    assert_good(*urlopen({"Content-Type": OCTET}), good_answer)


def test_httpx(url, auth, good_answer):
    httpx = pytest.importorskip("httpx")
    raw = httpx.post(url, content=PHOTO, headers=auth, timeout=60)
    assert "content-type" not in raw.request.headers
    assert_good(raw.status_code, raw.content, good_answer)
    typed = httpx.post(url, content=PHOTO, headers={**auth, "Content-Type": "image/jpeg"}, timeout=60)
    assert_good(typed.status_code, typed.content, good_answer)
    form = httpx.post(url, files={"file": ("photo.jpg", PHOTO, "image/jpeg")}, headers=auth, timeout=60)
    assert_good(form.status_code, form.content, good_answer)


@pytest.mark.parametrize("image", [base64.b64encode(PHOTO).decode(),
                                   "data:image/jpeg;base64," + base64.b64encode(PHOTO).decode()],
                         ids=["base64", "data-url"])
def test_json_base64(url, auth, good_answer, image):
    response = requests.post(url, json={"image": image}, headers=auth, timeout=60)
    assert_good(response.status_code, response.content, good_answer)


def test_our_client_sends_an_explicit_type(server, good_answer):
    seen = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, *a, **k: seen.append(response.request.headers))
    with session:
        client = TorchServeClient(server.inference_url, key_file=server.key_file, session=session)
        outcome = client.predict(Target(MODEL), PHOTO)
    assert outcome.ok, outcome.error
    assert_good(outcome.status, json.dumps(outcome.json).encode(), good_answer)
    assert seen[-1]["Content-Type"] == OCTET


# -- what a browser's fetch sends ------------------------------------------------------------------


def raw_request(url: str, method: str, headers: dict, body: bytes) -> tuple[int, bytes]:
    """Exactly these headers and this body (http.client adds only Host and Content-Length)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, parts.path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


BROWSER = {"Accept": "*/*", "Origin": "http://localhost:3000", "Sec-Fetch-Mode": "cors"}


@pytest.mark.parametrize("blob_type", ["image/jpeg", ""], ids=["typed-blob", "untyped-blob"])
def test_fetch_with_a_blob_body(url, auth, good_answer, blob_type):
    # fetch(url, {method: "POST", body: blob}): Content-Type is blob.type, none when it is "".
    headers = {**BROWSER, **auth, **({"Content-Type": blob_type} if blob_type else {})}
    assert_good(*raw_request(url, "POST", headers, PHOTO), good_answer)


@pytest.mark.parametrize("filename, part_type", [("photo.jpg", "image/jpeg"), ("blob", OCTET)],
                         ids=["file-input", "untyped-blob"])
def test_fetch_with_form_data(url, auth, good_answer, filename, part_type):
    # formData.append("file", file) from an <input type=file>, or a Blob with no type (Chrome
    # then names it "blob" and types it application/octet-stream).
    boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {part_type}\r\n\r\n").encode() + PHOTO + f"\r\n--{boundary}--\r\n".encode()
    headers = {**BROWSER, **auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    assert_good(*raw_request(url, "POST", headers, body), good_answer)


# -- gRPC --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_stub(server, tmp_path_factory):
    grpc = pytest.importorskip("grpc")
    pytest.importorskip("grpc_tools")
    from afdserve.ops.grpc_stubs import load_stubs

    pb2, pb2_grpc = load_stubs(tmp_path_factory.mktemp("grpc_stubs"))
    channel = grpc.insecure_channel(server.grpc_inference_target)
    yield grpc, pb2, pb2_grpc.InferenceAPIsServiceStub(channel)
    channel.close()


def test_grpc_is_on_loopback(server):
    assert server.settings["grpc_inference_address"] == "127.0.0.1"
    assert server.settings["grpc_management_address"] == "127.0.0.1"


def test_grpc_predictions(server, grpc_stub, good_answer):
    grpc, pb2, stub = grpc_stub
    key = [("authorization", server.inference_headers()["Authorization"])]
    reply = stub.Predictions(pb2.PredictionsRequest(model_name=MODEL, input={"data": PHOTO}),
                             metadata=key, timeout=60)
    assert_good(200, reply.prediction, good_answer)
    # TorchServe 0.12 drops the handler's status on gRPC: a refused image is an OK reply whose
    # JSON has "error" (GRPCJob.response ignores the status code).
    junk = stub.Predictions(pb2.PredictionsRequest(model_name=MODEL, input={"data": b"not an image"}),
                            metadata=key, timeout=60)
    assert "error" in json.loads(junk.prediction)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Predictions(pb2.PredictionsRequest(model_name=MODEL, input={"data": PHOTO}), timeout=60)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
