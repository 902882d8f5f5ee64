"""End to end: `afdserve demo` against a real TorchServe, used the way a person uses it.

The demo's logic (afdserve.demo.compare) is checked against the served models; the command
itself runs as a process on a free port and headless Chromium (Debian's, driven by Playwright)
opens the page. The demo starts before TorchServe does, as it may for a user: the page must say
that no server answers; once the server is up, the same page shows the restorer's output and
compares both models on an uploaded photo at the quality the slider is dragged to.

Chromium: /usr/bin/chromium (apt-get install chromium), or $AFDSERVE_CHROMIUM. Without it the
browser tests are skipped, unless AFDSERVE_REQUIRE_BROWSER=1 (CI sets it): then they fail.
AFDSERVE_SCREENSHOT=path keeps a screenshot of the page (docs/demo.md's is made that way).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image
from skimage import data

from afdserve.demo.compare import Comparer
from afdserve.imaging.decode import decode_image
from afdserve.ops.client import TorchServeClient
from afdserve.ops.server import free_ports
from afdserve.packaging.archive import CLASSIFIERS, RESTORERS, build_classifier_archive, build_restorer_archive

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("AFDSERVE_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium calls out at start-up, which a closed
# network refuses slowly.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MODELS = {"lite0_baseline": "lite0_baseline.1.0.mar", "afd_classifier": "afd_classifier.1.0.mar",
          "swinir_restorer": f"swinir_restorer.{RESTORERS['swinir_restorer'].version}.mar"}
MAX_SIDE = 320  # the logic tests shrink photos to this (the page keeps the default, 1024)


@pytest.fixture(scope="module")
def model_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("model_store")
    for name in ("lite0_baseline", "afd_classifier"):
        build_classifier_archive(CLASSIFIERS[name], store)
    build_restorer_archive(RESTORERS["swinir_restorer"], store)
    return store


@pytest.fixture(scope="module")
def ports():
    """TorchServe's ports, known before it starts so that the demo can start first."""
    return tuple(free_ports(3))


@pytest.fixture(scope="module")
def key_link(tmp_path_factory):
    """Where the demo looks for the key file: a link to the server's, made once it has one."""
    return tmp_path_factory.mktemp("keys") / "key_file.json"


@pytest.fixture(scope="module")
def server(model_store, torchserve_session_factory, ports, key_link):
    server = torchserve_session_factory(model_store, MODELS, ports=ports)
    key_link.symlink_to(server.key_file)
    return server


@pytest.fixture(scope="module")
def comparer(server):
    return Comparer(TorchServeClient(server.inference_url, key_file=server.key_file), max_side=MAX_SIDE)


# ---------------------------------------------------------------------------------------------
# The page in a browser


def _require(ok: bool, reason: str) -> None:
    if not ok:
        if os.environ.get("AFDSERVE_REQUIRE_BROWSER"):
            pytest.fail(reason + " (AFDSERVE_REQUIRE_BROWSER is set)")
        pytest.skip(reason)


class DemoProcess:
    """`afdserve demo` started as a user starts it, on a free port, in a directory of its own."""

    def __init__(self, workdir: Path, url: str, key_file: Path):
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
               "GRADIO_TEMP_DIR": str(workdir / "gradio")}
        self.log = workdir / "demo.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "afdserve.cli", "demo", "--port", str(self.port), "--url", url,
                 "--key-file", str(key_file)],
                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"afdserve demo exited ({self.process.returncode}):\n{self.log.read_text()}")
            try:
                if requests.get(self.url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"afdserve demo not up after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def browser():
    _require(CHROMIUM.exists(), f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    _require(importlib.util.find_spec("playwright") is not None, "playwright is not installed (the test extra)")
    _require(importlib.util.find_spec("gradio") is not None, "gradio is not installed (the demo extra)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def demo(browser, ports, key_link, tmp_path_factory):
    """`afdserve demo` pointed at where TorchServe will be, as `afdserve serve` writes it."""
    demo = DemoProcess(tmp_path_factory.mktemp("demo"), f"http://127.0.0.1:{ports[0]}", key_link)
    try:
        demo.wait_ready()
        yield demo
    finally:
        demo.stop()


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 960})
    hosts = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
    page.goto(url)
    return page, hosts


def _top5_rows(page, elem_id: str) -> list[str]:
    return page.locator(f"#{elem_id} [data-testid$='-confidence-set'] dt").all_inner_texts()


# The browser tests run in file order (pytest's): first before the server has started.


def test_the_page_says_when_no_server_answers(browser, demo, ports):
    try:
        requests.get(f"http://127.0.0.1:{ports[0]}/ping", timeout=2)
        pytest.skip("TorchServe already started (this test comes first in the file)")
    except requests.ConnectionError:
        pass
    page, hosts = _open(browser, demo.url)
    problem = page.locator("#problem")
    problem.get_by_text("No TorchServe is answering at").wait_for(timeout=60_000)
    assert "make serve" in problem.inner_text()
    assert "Traceback" not in page.content()
    assert hosts == {f"127.0.0.1:{demo.port}"}, hosts
    page.close()


def test_the_page_compares_both_models_on_an_uploaded_photo(browser, demo, server, tmp_path):
    page, hosts = _open(browser, demo.url)
    details = page.locator("#details")
    # On load the page compares the first sample at the default quality; the demo found the
    # server's key by itself (it was started before the key existed).
    details.get_by_text("The server read: quality 10").wait_for(timeout=60_000)
    assert not page.locator("#problem").is_visible()

    restore = page.locator("#restore input[type=checkbox]")
    restore.check()
    page.locator("#restored").get_by_text("Restored by swinir_restorer in").wait_for(timeout=60_000)
    page.locator("#restored img").wait_for(timeout=30_000)
    screenshot = os.environ.get("AFDSERVE_SCREENSHOT")
    if screenshot:
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=screenshot, full_page=True)
    restore.uncheck()
    page.locator("#restored").wait_for(state="hidden", timeout=30_000)

    photo = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()).save(photo)
    page.locator("#photo input[type=file]").set_input_files(photo)
    details.get_by_text("Sent: 451×300 px JPEG at quality 10,").wait_for(timeout=60_000)

    # Drag the slider as a person would, from 10 to about 35.
    track = page.locator("#quality input[type=range]")
    box = track.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.09, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.35, y, steps=5)
    page.mouse.up()
    quality = int(track.input_value())
    assert 20 < quality < 50, quality
    details.get_by_text(f"JPEG at quality {quality},").wait_for(timeout=60_000)
    details.get_by_text(f"The server read: quality {quality},").wait_for(timeout=60_000)

    for elem_id, model in (("baseline", "lite0_baseline"), ("afd", "afd_classifier")):
        rows = _top5_rows(page, elem_id)
        assert len(rows) == 5, (elem_id, rows)
        heading = page.locator(f"#{elem_id} [data-testid='block-label']").inner_text()
        assert heading.startswith(f"{model} 1.0 · ") and heading.endswith(" ms"), heading
    assert any("cat" in row for row in _top5_rows(page, "afd")), _top5_rows(page, "afd")
    # Everything the page loaded came from the demo itself: no CDN, no fonts, no analytics.
    assert hosts == {f"127.0.0.1:{demo.port}"}, hosts
    page.close()


# ---------------------------------------------------------------------------------------------
# The page's logic against the served models


def test_compare_gives_both_top5_lists_and_the_quality_the_server_read(comparer):
    result = comparer.compare(data.coffee(), 10)
    assert result.problem is None, result.problem
    assert [a.target.model for a in result.answers] == ["lite0_baseline", "afd_classifier"]
    for answer in result.answers:
        assert answer.error is None and answer.version == "1.0"
        assert len(answer.top5) == 5 and answer.latency_s > 0
        probs = list(answer.top5.values())
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        assert answer.title.startswith(f"{answer.target.model} 1.0 · ") and answer.title.endswith(" ms")
    assert result.server_quality == 10 == decode_image(result.jpeg).quality
    assert result.size == (320, 213) and result.original_size == (600, 400)
    assert "espresso" in result.answers[1].top5


def test_restore_gives_the_restorers_output(comparer):
    compressed = comparer.compare(data.chelsea(), 20)
    restored = comparer.restore(compressed.jpeg)
    assert restored.error is None and restored.latency_s > 0
    assert restored.image.shape == compressed.compressed.shape


def test_wrong_or_missing_key_is_a_message(server, tmp_path):
    wrong = tmp_path / "key_file.json"
    wrong.write_text(json.dumps({"inference": {"key": "not-the-key"}}))
    result = Comparer(TorchServeClient(server.inference_url, key_file=wrong)).compare(data.coffee(), 10)
    assert f"refused the inference key in `{wrong}`" in result.problem
    missing = tmp_path / "nowhere" / "key_file.json"
    result = Comparer(TorchServeClient(server.inference_url, key_file=missing)).compare(data.coffee(), 10)
    assert f"there is no `{missing}`" in result.problem


def test_a_model_that_is_not_served_fails_alone(server):
    client = TorchServeClient(server.inference_url, key_file=server.key_file)
    result = Comparer(client, classifiers=("lite0_baseline", "no_such_model")).compare(data.coffee(), 10)
    assert result.problem is None and len(result.answers[0].top5) == 5
    assert "`no_such_model` is not served at" in result.answers[1].error
