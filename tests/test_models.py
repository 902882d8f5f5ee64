import copy

import pytest
import torch
from PIL import Image
from skimage import data

from afdserve.imaging.preprocess import image_tensor
from afdserve.models.afd import AFDConfig, AFDModule
from afdserve.models.classifier import (INSERTION_POINTS, build_classifier, fuse_for_deployment,
                                        load_deployed)
from afdserve.models.efficientnet_lite import create_lite0, fold_batchnorms
from afdserve.models.repconv import RepConv


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def perturb_(module: torch.nn.Module, scale: float = 0.05) -> None:
    """Move every parameter off its initialisation, so a check cannot pass by zeros."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


@pytest.fixture(scope="module")
def backbone():
    return create_lite0(pretrained=True)


@pytest.fixture(scope="module")
def photos():
    return torch.stack([image_tensor(Image.fromarray(data.chelsea())),
                        image_tensor(Image.fromarray(data.coffee()))])


@pytest.mark.parametrize("shape", [(2, 5, 9, 13), (1, 5, 1, 1), (1, 5, 2, 3)])
def test_repconv_fuse_is_exact_including_borders(shape):
    torch.manual_seed(0)
    block = RepConv(shape[1], 7).eval()
    perturb_(block, 0.3)
    x = torch.randn(shape)
    with torch.no_grad():
        before = block(x)
        block.fuse()
        after = block(x)
    assert block.is_fused and not hasattr(block, "expand_1x1")
    assert relative_error(after, before) < 1e-5


def test_repconv_zero_output_still_learns():
    block = RepConv(4, 4, act=False)
    block.zero_output_()
    x = torch.randn(1, 4, 6, 6)
    y = block(x)
    assert torch.count_nonzero(y) == 0
    y.sum().backward()
    assert block.expand_3x3.weight.grad.abs().sum() > 0
    assert block.spatial_1x1.weight.grad.abs().sum() > 0


def test_fold_batchnorms_keeps_outputs(backbone, photos):
    folded = fold_batchnorms(copy.deepcopy(backbone))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert relative_error(folded(photos), backbone(photos)) < 1e-5


def test_backbone_recognises_real_photos(backbone, photos):
    with torch.no_grad():
        top5 = backbone(photos).topk(5).indices.tolist()
    cats = {281, 282, 283, 284, 285, 287}  # tabby, tiger cat, Persian, Siamese, Egyptian cat, lynx
    assert top5[0][0] in cats and 285 in top5[0]
    assert top5[1][0] == 967  # espresso


@pytest.mark.parametrize("config", [
    AFDConfig(),
    AFDConfig(gate="global", use_quality=False),
    AFDConfig(insert_after="blocks.1", channels=24, width=8),
    AFDConfig(fe_downscale=2),
])
def test_untrained_afd_leaves_output_exactly_unchanged(backbone, photos, config):
    model = build_classifier(config, pretrained=False)
    model.backbone.load_state_dict(backbone.state_dict())
    dct = torch.randn(2, 192, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(photos, dct, torch.tensor([10.0, 90.0])), backbone(photos))


@pytest.mark.parametrize("config", [AFDConfig(), AFDConfig(gate="global"), AFDConfig(fe_downscale=2)])
def test_fused_classifier_matches_unfused(backbone, photos, config, tmp_path):
    model = build_classifier(config, pretrained=False)
    model.backbone.load_state_dict(backbone.state_dict())
    perturb_(model.afd)
    dct, quality = torch.randn(2, 192, 28, 28), torch.tensor([10.0, 90.0])
    with torch.no_grad():
        unfused = model(photos, dct, quality)
        assert relative_error(unfused, backbone(photos)) > 1e-3  # the module really acts
        fused = fuse_for_deployment(copy.deepcopy(model))
        assert relative_error(fused(photos, dct, quality), unfused) < 1e-5
        # Deployment weights round-trip through a safe load into the fused structure.
        torch.save(fused.state_dict(), tmp_path / "model.pt")
        loaded = load_deployed(config, tmp_path / "model.pt")
        assert relative_error(loaded(photos, dct, quality), unfused) < 1e-5


@pytest.mark.parametrize("fe_downscale", [1, 2])
def test_afd_handles_odd_feature_sizes(fe_downscale):
    module = AFDModule(AFDConfig(width=4, fe_downscale=fe_downscale))
    perturb_(module)
    out = module(torch.randn(1, 32, 15, 21), torch.randn(1, 192, 4, 5), None)
    assert out.shape == (1, 32, 15, 21)


def test_only_the_afd_module_trains():
    model = build_classifier(AFDConfig(width=4), pretrained=False).train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.afd.parameters())
    assert not model.backbone.training  # frozen batch norms stay in eval mode


def test_insertion_points_are_validated():
    assert "stem" in INSERTION_POINTS
    with pytest.raises(ValueError):
        build_classifier(AFDConfig(insert_after="head"), pretrained=False)
    with pytest.raises(ValueError):
        AFDConfig(gate="sometimes")
