"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


# =============================================================================================
# TorchServe server fixtures
# Start a LocalTorchServe (the same start-up path as `afdserve serve`) on free ports with its own
# TEMP/TMPDIR in a temporary workdir, and always stop it, also when the test or start() fails.
#
#   def test_x(torchserve_factory):
#       server = torchserve_factory(model_store, {"afd_classifier": "afd_classifier.1.0.mar"})
#       requests.post(f"{server.inference_url}/predictions/afd_classifier",
#                     headers=server.inference_headers(), data=jpeg_bytes)
# =============================================================================================


@contextlib.contextmanager
def _torchserve_servers(tmp_path_factory):
    from afdserve.ops.server import LocalTorchServe, free_ports

    servers = []

    def start(model_store, models: dict[str, str], timeout: float = 120, **kwargs):
        workdir = tmp_path_factory.mktemp("torchserve")
        kwargs.setdefault("config_file", REPO_ROOT / "config.properties")
        kwargs.setdefault("ports", tuple(free_ports(3)))
        kwargs.setdefault("tmpdir", workdir / "tmp")
        server = LocalTorchServe(model_store, models, workdir, foreground=True, **kwargs)
        servers.append(server)  # before start(): a failed start still gets stopped
        server.start(timeout=timeout)
        return server

    try:
        yield start
    finally:
        for server in reversed(servers):
            server.stop()


@pytest.fixture
def torchserve_factory(tmp_path_factory):
    """Per test: call it to start a server; every server is stopped after the test."""
    with _torchserve_servers(tmp_path_factory) as start:
        yield start


@pytest.fixture(scope="session")
def torchserve_session_factory(tmp_path_factory):
    """Same, but servers live until the end of the session (share one slow start)."""
    with _torchserve_servers(tmp_path_factory) as start:
        yield start


# ============================================================================ end server fixtures


# =============================================================================================
# A user's own timm CNN: a tiny architecture with random weights, saved as a plain state dict
# =============================================================================================

TINY_TIMM = "mobilenetv3_small_050"  # 1.6M parameters, a few ms per image on one CPU thread
TINY_INPUT = 196  # not Lite0's 224, nor a multiple of 8: the drift map's last block is cut


@pytest.fixture(scope="session")
def tiny_timm_checkpoint(tmp_path_factory) -> Path:
    import timm
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("timm") / f"{TINY_TIMM}.pth"
    model = timm.create_model(TINY_TIMM, pretrained=False)
    with torch.no_grad():  # a random init answers near 1/1000 for every class: make its top-5 decisive
        model.classifier.weight.mul_(1000)
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def labelled_photos(tmp_path_factory) -> Path:
    """Six labelled JPEGs of different sizes (two held out by the 0.3 split's name hash)."""
    import csv

    from tests.images import encode, photo

    folder = tmp_path_factory.mktemp("labelled_photos")
    (folder / "images").mkdir()
    sources = [photo("chelsea"), photo("coffee"), photo("camera").convert("RGB")]
    with open(folder / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "class_index"])
        for i in range(6):
            im = sources[i % 3].resize((250 + 7 * i, 220 + 5 * i))
            (folder / "images" / f"photo_{i}.jpg").write_bytes(encode(im, quality=90))
            writer.writerow([f"photo_{i}.jpg", 281 + i])
    return folder
