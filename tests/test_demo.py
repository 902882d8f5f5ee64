"""The demo's logic without a server or a browser: what the page says when no TorchServe answers
or the key file is broken, how photos are prepared, the bundled samples, and that afdserve runs
without gradio. With a real TorchServe and a browser: test_e2e_demo.py."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from afdserve.demo.compare import FIRST_SAMPLE, SAMPLES_DIR, Comparer, _top5, samples
from afdserve.imaging.decode import decode_image
from afdserve.ops.client import TorchServeClient
from afdserve.ops.server import free_ports

REPO_ROOT = Path(__file__).resolve().parents[1]


def comparer(key_file=None, **kwargs) -> Comparer:
    url = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    return Comparer(TorchServeClient(url, key_file=key_file, timeout=5), **kwargs)


def test_no_server_is_one_clear_message_and_no_stack_trace():
    demo = comparer()
    result = demo.compare(samples()[0], 10)
    assert result.problem.startswith(f"No TorchServe is answering at {demo.url}")
    assert "make serve" in result.problem and "Traceback" not in result.problem
    assert [a.top5 for a in result.answers] == [{}, {}]
    # The photo was still compressed, so the page can show it.
    assert decode_image(result.jpeg).quality == 10 and result.compressed.shape[2] == 3


def test_unreadable_key_file_is_named(tmp_path):
    key_file = tmp_path / "key_file.json"
    key_file.write_text("{not json")
    result = comparer(key_file).compare(samples()[0], 30)
    assert f"`{key_file}` holds no readable inference key" in result.problem


def test_large_photos_are_shrunk_before_compression():
    demo = comparer(max_side=256)
    pixels, original = demo.prepare(np.zeros((600, 900, 3), np.uint8))
    assert original == (900, 600) and pixels.shape == (171, 256, 3)
    pixels, original = demo.prepare(Image.new("RGBA", (100, 80)))
    assert original == (100, 80) and pixels.shape == (80, 100, 3)


def test_top5_keeps_imagenet_names_that_occur_twice_apart():
    body = {"top_k": [{"label": "crane", "synset": "n02012849", "probability": 0.5},
                      {"label": "tiger_cat", "synset": "n02123159", "probability": 0.3},
                      {"label": "crane", "synset": "n03126707", "probability": 0.1}]}
    assert _top5(body) == {"crane (n02012849)": 0.5, "tiger cat": 0.3, "crane (n03126707)": 0.1}


def test_samples_are_photos_with_their_source_written_down():
    found = samples()
    assert found[0].name == FIRST_SAMPLE and len(found) >= 2
    readme = (SAMPLES_DIR / "README.md").read_text()
    for path in found:
        assert path.name in readme, f"{path.name}: say where it comes from and its licence"
        with Image.open(path) as im:
            assert im.mode == "RGB" and max(im.size) <= 1024
        assert path.stat().st_size < 200_000


def run_without_gradio(tmp_path, code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter where ``import gradio`` fails, as in a clone without the extra."""
    (tmp_path / "gradio.py").write_text("raise ImportError('no gradio here')\n")
    prelude = f"import sys\nsys.path[:0] = [{str(tmp_path)!r}, {str(REPO_ROOT)!r}]\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120)


def test_afdserve_works_without_gradio(tmp_path):
    out = run_without_gradio(tmp_path, "from afdserve.cli import main\n"
                                       "from afdserve.demo import app, compare\n"
                                       "main(['demo', '--help'])\n")
    assert out.returncode == 0 and "--key-file" in out.stdout, out.stderr
    out = run_without_gradio(tmp_path, "from afdserve.demo.app import _gradio\n_gradio()\n")
    assert out.returncode != 0 and "pip install -e '.[demo]'" in out.stderr


def test_demo_finds_the_server_where_serve_put_it(tmp_path):
    from afdserve.demo.app import inference_url

    config = tmp_path / "config.properties"
    config.write_text("inference_address=http://0.0.0.0:8443\n")
    assert inference_url(config) == ("http://127.0.0.1:8443", None)
    url, note = inference_url(tmp_path / "missing.properties")
    assert url == "http://127.0.0.1:8080" and "missing.properties" in note
