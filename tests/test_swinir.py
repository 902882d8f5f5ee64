"""SwinIR for JPEG CAR: official state-dict layout, official forward, checkpoint loading, cost.

Fixtures (data produced with the official implementation, JingyunLiang/SwinIR 6545850):
  official_swinir_m_car_layout.json  every state-dict key (in order) and shape of colour/gray SwinIR-M
  tiny_swinir_golden.pt              a tiny SwinIR's weights with official outputs for two inputs
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from afdserve.models.swinir import (
    PRESETS,
    SwinIR,
    SwinIRConfig,
    count_macs,
    infer_swinir_config,
    load_swinir_checkpoint,
    masked_window_index,
    shift_attention_mask,
)

FIXTURES = Path(__file__).parent / "fixtures" / "swinir"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Other jobs share the CPU; the tiny models gain nothing from threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def layout():
    return json.loads((FIXTURES / "official_swinir_m_car_layout.json").read_text())


@pytest.fixture(scope="module")
def golden():
    return torch.load(FIXTURES / "tiny_swinir_golden.pt", weights_only=True)


@pytest.fixture(scope="module")
def tiny(golden):
    model = SwinIR(SwinIRConfig.from_record(golden["config"])).eval()
    model.load_state_dict(golden["params"], strict=True)
    return model


# Colour on the meta device (shapes only, as callers build it for cost tables), gray for real.
@pytest.mark.parametrize("name, device", [("color_car_swinir_m", "meta"), ("gray_car_swinir_m", "cpu")])
def test_state_dict_layout_is_official(layout, name, device):
    official = layout["models"][name]
    config = PRESETS[name]
    assert SwinIRConfig.from_record(official["config"]) == config
    with torch.device(device):
        model = SwinIR(config)
    state = model.state_dict()
    assert list(state) == layout["keys"]  # names and order
    assert [list(v.shape) for v in state.values()] == official["shapes"]
    assert sum(p.numel() for p in model.parameters()) == official["num_params"]
    # The index is an integer buffer, as in the official checkpoints.
    assert state["layers.0.residual_group.blocks.0.attn.relative_position_index"].dtype == torch.int64


def test_config_record_round_trip():
    config = SwinIRConfig(in_chans=1, depths=[2, 4], num_heads=[2, 3], embed_dim=36, img_size=28)
    record = json.loads(json.dumps(config.to_record()))
    assert SwinIRConfig.from_record(record) == config
    with pytest.raises(ValueError, match="unknown"):
        SwinIRConfig.from_record({**record, "windowsize": 8})


@pytest.mark.parametrize("kwargs", [{"upsampler": "pixelshuffle", "upscale": 2},
                                    {"upsampler": "nearest+conv"}, {"upscale": 4}])
def test_config_refuses_super_resolution(kwargs):
    with pytest.raises(ValueError, match="super-resolution"):
        SwinIRConfig(**kwargs)


def test_fresh_buffers_equal_official(golden):
    # load_state_dict overwrites the buffers, so check what the constructor computes itself.
    fresh = SwinIR(SwinIRConfig.from_record(golden["config"])).state_dict()
    buffers = [k for k in golden["params"] if k.endswith(("attn_mask", "relative_position_index"))]
    assert len(buffers) == 6
    for key in buffers:
        assert torch.equal(fresh[key], golden["params"][key]), key


@pytest.mark.parametrize("which", ["", "_unaligned"])
def test_golden_forward(tiny, golden, which):
    # Neither input is img_size (14): the shift mask is computed for the input's (padded) size;
    # the unaligned one also goes through reflect padding and cropping.
    with torch.no_grad():
        out = tiny(golden["input" + which])
    assert out.shape == golden["output" + which].shape
    assert (out - golden["output" + which]).abs().max().item() < 1e-5


def test_stored_mask_used_at_training_size(tiny):
    # At img_size the blocks use their stored attn_mask; it must equal the computed one.
    block = tiny.layers[0].residual_group.blocks[1]
    assert torch.equal(block.attn_mask, shift_attention_mask(14, 14, 7, 3))
    x = torch.rand(1, 3, 14, 14)
    with torch.no_grad():
        assert tiny(x).shape == x.shape


@pytest.mark.parametrize("size", [(9, 12), (15, 8), (4, 30), (23, 17)])
def test_output_size_equals_input_size(size):
    model = SwinIR(SwinIRConfig(in_chans=1, embed_dim=12, depths=(2,), num_heads=(2,), img_size=14)).eval()
    x = torch.rand(2, 1, *size)
    with torch.no_grad():
        assert model(x).shape == x.shape


@pytest.mark.parametrize("size", [(1, 1), (3, 20), (2, 64)])
def test_thinner_than_reflect_padding_allows_still_restores(tiny, size):
    with torch.no_grad():
        assert tiny(torch.rand(1, 3, *size)).shape == (1, 3, *size)


def test_wrong_channels_refused(tiny):
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        tiny(torch.rand(1, 1, 20, 20))


def test_batch_equals_singles(tiny):
    x = torch.rand(2, 3, 17, 24)
    with torch.no_grad():
        batch = tiny(x)
        singles = torch.cat([tiny(x[:1]), tiny(x[1:])])
    assert (batch - singles).abs().max().item() < 1e-5


@pytest.mark.parametrize("entry", ["params", "params_ema", None])
def test_load_checkpoint_file(tmp_path, golden, entry):
    path = tmp_path / "swinir.pth"
    torch.save(golden["params"] if entry is None else {entry: golden["params"]}, path)
    model = load_swinir_checkpoint(path)
    assert not model.training
    assert model.config == SwinIRConfig.from_record(golden["config"])  # inferred from shapes
    with torch.no_grad():
        out = model(golden["input_unaligned"])
    assert (out - golden["output_unaligned"]).abs().max().item() < 1e-5


def test_load_prefers_params_like_the_official_car_test(golden):
    zeros = {k: torch.zeros_like(v) for k, v in golden["params"].items()}
    model = load_swinir_checkpoint({"params": golden["params"], "params_ema": zeros})
    assert torch.equal(model.conv_first.weight, golden["params"]["conv_first.weight"])
    model = load_swinir_checkpoint({"params": golden["params"], "params_ema": zeros}, param_key="params_ema")
    assert not model.conv_first.weight.any()


def test_infer_config_of_swinir_m(layout):
    for name, config in PRESETS.items():
        state = {k: torch.empty(shape, device="meta")
                 for k, shape in zip(layout["keys"], layout["models"][name]["shapes"])}
        assert infer_swinir_config(state) == config


def test_load_with_explicit_config(golden):
    config = SwinIRConfig.from_record(golden["config"])
    assert load_swinir_checkpoint(golden["params"], config).config == config
    wrong = SwinIRConfig(embed_dim=24, depths=(2, 2), num_heads=(3, 3), img_size=14)
    with pytest.raises(ValueError, match="does not fit"):
        load_swinir_checkpoint(golden["params"], wrong)


def test_non_swinir_checkpoints_are_refused(tmp_path, golden):
    with pytest.raises(ValueError, match="not a SwinIR"):
        load_swinir_checkpoint({"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(10, 8)})
    # A super-resolution SwinIR: same body, an upsampling tail, 3 output channels from conv_last.
    sr = dict(golden["params"])
    sr["conv_before_upsample.0.weight"] = torch.zeros(64, 24, 3, 3)
    sr["upsample.0.weight"] = torch.zeros(256, 64, 3, 3)
    with pytest.raises(ValueError, match="super-resolution"):
        load_swinir_checkpoint({"params": sr})
    # A leftover key fails the strict load.
    extra = {**golden["params"], "head.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match="does not fit"):
        load_swinir_checkpoint(extra)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ValueError, match="not a readable"):
        load_swinir_checkpoint(garbage)
    with pytest.raises(ValueError, match="state dict of tensors"):
        load_swinir_checkpoint({"params": {"a": 1}})


@pytest.mark.parametrize("resi_connection", ["1conv", "3conv"])
def test_count_macs_matches_flop_counter(resi_connection):
    config = SwinIRConfig(embed_dim=24, depths=(2, 3), num_heads=(2, 4), img_size=14,
                          resi_connection=resi_connection)
    model = SwinIR(config).eval()
    # The flop counter does not see torch's fused CPU attention: count the unfused one.
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, 19, 25))  # padded to 21 x 28: 3 x 4 windows of 7 x 7
    # Beside the model's own work, each shifted block computes its masked windows twice (the
    # last row and column of windows: 6 of 12), two products of N x N x dim each.
    shifted_blocks = sum(depth // 2 for depth in config.depths)
    recomputed = shifted_blocks * len(masked_window_index(21, 28, 7)) * 2 * 49 * 49 * config.embed_dim
    assert counter.get_total_flops() == 2 * (count_macs(model, 19, 25) + recomputed)


def test_swinir_m_macs_per_pixel():
    # About 12M MACs per pixel (the figure quoted for SwinIR-M CAR), exactly for aligned sizes.
    assert count_macs(PRESETS["color_car_swinir_m"], 224, 224) == 12_017_160 * 224 * 224


def test_attention_recomputes_only_the_masked_windows_and_agrees_with_all():
    from afdserve.models.swinir import WindowAttention, window_partition

    torch.manual_seed(0)
    attention = WindowAttention(dim=16, window_size=8, num_heads=2).eval()
    height, width = 40, 24  # 5 x 3 windows
    mask = shift_attention_mask(height, width, 8, 4)
    masked = masked_window_index(height, width, 8)
    assert sorted(masked.tolist()) == sorted(i for i in range(15) if mask[i].abs().amax() > 0)
    x = window_partition(torch.randn(2, height, width, 16), 8)
    with torch.no_grad():
        some, every = attention(x, mask, masked), attention(x, mask)
    assert (some - every).abs().max().item() < 1e-6
