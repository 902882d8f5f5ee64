"""Tiled restoration and the restorer service, in-process (no server)."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from afdserve.imaging.decode import decode_image
from afdserve.models.swinir import SwinIR, SwinIRConfig
from afdserve.serving.restoration import TileSpec, restore, restore_tensor, tile_starts
from afdserve.serving.requests import BadRequest
from afdserve.serving.restorer_service import OutputFormat, RestorerService, output_format

TINY = SwinIRConfig(embed_dim=16, depths=(1, 1), num_heads=(2, 2), window_size=8, img_size=16, drop_path_rate=0.0)


def tiny_swinir(seed: int = 0) -> SwinIR:
    torch.manual_seed(seed)
    return SwinIR(TINY).eval()


class PointwiseNet(torch.nn.Module):
    """Each output pixel depends on its input pixel only, so tiling must not change it."""

    def forward(self, x):
        return x * 0.5 + 0.25


def jpeg(array: np.ndarray, quality: int = 30) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=quality)
    return out.getvalue()


@pytest.mark.parametrize("length, size, overlap", [(100, 256, 32), (256, 256, 32), (257, 256, 32),
                                                   (1000, 256, 32), (513, 128, 16)])
def test_tiles_cover_the_image_with_the_overlap(length, size, overlap):
    starts = tile_starts(length, size, overlap)
    assert starts[0] == 0 and starts[-1] + min(size, length) == length
    for a, b in zip(starts, starts[1:]):
        assert b - a <= size - overlap  # neighbours overlap by at least `overlap`
        assert a % 8 == 0  # interior tiles stay on the JPEG block grid


def test_tiling_is_exact_for_a_pointwise_model():
    image = torch.rand(1, 3, 300, 530)
    whole = PointwiseNet()(image)
    tiled = restore_tensor(PointwiseNet(), image, TileSpec(size=64, overlap=16, batch=3, whole=0))
    assert tiled.shape == image.shape
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)


def test_tiled_swinir_matches_the_whole_image_away_from_seams():
    model = tiny_swinir()
    image = torch.rand(1, 3, 80, 96)
    with torch.no_grad():
        whole = model(image).clamp(0, 1)
    tiled = restore_tensor(model, image, TileSpec(size=48, overlap=16, whole=0))
    assert tiled.shape == image.shape
    # A shallow net sees a few pixels around each: blended overlaps keep the seams small.
    assert (tiled - whole).abs().mean() < 0.02


def test_restore_keeps_the_size_of_odd_images():
    rgb = data.astronaut()[:61, :45]
    out = restore(tiny_swinir(), rgb, TileSpec(size=32, overlap=8, whole=0))
    assert out.shape == rgb.shape and out.dtype == np.uint8


@pytest.mark.parametrize("row, headers, expected", [
    (b"x", {}, OutputFormat("png", 95)),
    ({"body": b"x", "format": b"jpeg"}, {}, OutputFormat("jpeg", 95)),
    ({"body": b"x", "format": b"jpg", "quality": b"70"}, {}, OutputFormat("jpeg", 70)),
    ({"body": b"x"}, {"X-Output-Format": "JPEG", "X-JPEG-Quality": "42"}, OutputFormat("jpeg", 42)),
])
def test_output_format_from_header_or_query(row, headers, expected):
    assert output_format(row, headers) == expected


@pytest.mark.parametrize("row, headers", [
    ({"body": b"x", "format": b"gif"}, {}),
    ({"body": b"x", "format": b"jpeg", "quality": b"0"}, {}),
    ({"body": b"x", "format": b"jpeg", "quality": b"high"}, {}),
    ({"body": b"x", "quality": b"80"}, {}),  # a quality for a PNG answer is a mistake worth saying
])
def test_bad_output_options_are_refused(row, headers):
    with pytest.raises(BadRequest):
        output_format(row, headers)


def test_service_answers_each_request_of_a_batch():
    service = RestorerService(tiny_swinir(), "swinir_restorer", "0.1", max_pixels=200_000,
                              tiles=TileSpec(size=64, overlap=16, batch=2, whole=0))
    small = data.chelsea()[:40, :56]
    rows = [
        jpeg(small),                                    # PNG back, one forward with the next
        {"body": jpeg(small), "format": b"jpeg", "quality": b"60"},
        b"not an image",
        jpeg(data.astronaut()[:300, :200]),             # larger than a tile: tiled
        jpeg(data.astronaut()),                         # 512x512 > 200,000 pixels: 413
    ]
    replies = service.handle(rows, [{}] * len(rows))
    assert [r.status for r in replies] == [200, 200, 400, 200, 413]
    first = Image.open(io.BytesIO(replies[0].body))
    assert first.format == "PNG" and first.size == (56, 40) and replies[0].content_type == "image/png"
    second = decode_image(replies[1].body)
    assert second.format == "JPEG" and second.quality == 60 and second.image.size == (56, 40)
    assert replies[2].content_type == "application/json" and "error" in json.loads(replies[2].body)
    assert Image.open(io.BytesIO(replies[3].body)).size == (200, 300)
    # The batched answer equals the answer to the same request alone.
    alone = service.handle([rows[0]])[0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(alone.body))), np.asarray(first))


def test_build_packs_a_users_checkpoint_as_another_version(tmp_path):
    import zipfile

    from afdserve.cli import main
    from afdserve.packaging.manifest import served_archives

    weights = tmp_path / "user_swinir.pth"
    torch.save({"params_ema": tiny_swinir().state_dict()}, weights)  # as some official files are
    assert main(["build", "--models", "swinir_restorer", "--weights", str(weights), "--version", "2.0",
                 "--model-store", str(tmp_path / "store")]) == 0
    with zipfile.ZipFile(tmp_path / "store" / "swinir_restorer.2.0.mar") as z:
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
    assert manifest["model"]["modelName"] == "swinir_restorer" and manifest["model"]["modelVersion"] == "2.0"
    # A version other than the release's never becomes the default by being built.
    assert served_archives(tmp_path / "store", "swinir_restorer")[0] == "swinir_restorer.2.0.mar"
    assert main(["build", "--models", "swinir_restorer", "--weights", str(weights), "--version", "9.0",
                 "--model-store", str(tmp_path / "store")]) == 0
    assert served_archives(tmp_path / "store", "swinir_restorer")[0] == "swinir_restorer.2.0.mar"

    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert main(["build", "--models", "swinir_restorer", "--weights", str(tmp_path / "junk.pth"), "--version", "2.1",
                 "--model-store", str(tmp_path / "store")]) == 2


def test_shipped_restorer_releases_build_by_name():
    """The quality version (swinir_compact_v2_large) ships in the package: a pip user names it."""
    from afdserve.packaging.archive import WEIGHTS_DIR, restorer_settings, variant

    spec = variant("swinir_restorer", "2.1", "swinir_compact_v2_large")
    assert spec.weights == WEIGHTS_DIR / "swinir_compact_v2_large.pt"
    _, settings = restorer_settings(spec.weights, "model.pt")  # loads with its record's config
    assert settings.swinir["embed_dim"] == 64 and settings.swinir["depths"] == [4, 4, 4]
    with pytest.raises(ValueError, match="not found"):
        variant("swinir_restorer", "2.2", "no_such_release")


def test_restore_cost_counts_the_pixels_the_network_runs_on():
    from afdserve.serving.restoration import RestoreCost

    cost = RestoreCost(TileSpec(size=256, overlap=32))
    assert cost.tile_pixels(500, 500) == 9 * 256 * 256  # 3 x 3 overlapping tiles
    assert cost.tile_pixels(2, 3000) == 14 * 2 * 256  # thin tiles cost their own pixels only
