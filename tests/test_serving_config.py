"""Serving settings an archive carries (workers, threads, batching, precision) and how a worker
applies them."""

import io

import numpy as np
import pytest
import torch
from skimage import data

from afdserve.packaging.archive import CLASSIFIERS, RESTORERS, ServingConfig
from afdserve.models.classifier import build_classifier, fuse_for_deployment
from afdserve.serving.classifier_service import ClassifierService
from afdserve.serving.torchserve_context import apply_worker_threads
from images import encode
from PIL import Image


def test_frontend_keys_and_worker_settings():
    config = ServingConfig(workers=2, threads=1, batch_size=4, max_batch_delay_ms=5, cpu_precision="bfloat16",
                           reason="measured")
    assert config.frontend() == {"minWorkers": 2, "maxWorkers": 2, "batchSize": 4, "maxBatchDelay": 5,
                                 "responseTimeout": 60}
    assert config.settings() == {"threads": 1, "prepare_threads": 1, "precision": {"cpu": "bfloat16", "cuda": "float16"},
                                 "gpu_decode": False, "decode_budget_s": 5.0, "restore_budget_s": None,
                                 "serving_reason": "measured"}


@pytest.mark.parametrize("bad", [{"cpu_precision": "int8"}, {"workers": 0}, {"batch_size": 0},
                                 {"max_batch_delay_ms": -1}, {"threads": 0}, {"prepare_threads": 0},
                                 {"decode_budget_s": 0}, {"restore_budget_s": -1},
                                 {"restorer_cpu_precision": "int8"}])
def test_bad_settings_are_refused_at_build_time(bad):
    with pytest.raises(ValueError):
        ServingConfig(**bad)


def test_every_release_says_why_it_serves_as_it_does():
    for spec in {**CLASSIFIERS, **RESTORERS}.values():
        assert spec.serving.reason


def test_worker_threads_follow_the_archive():
    before = torch.get_num_threads()
    try:
        assert apply_worker_threads({"threads": 1}) == 1 == torch.get_num_threads()
        assert apply_worker_threads({}) == 1  # no setting: left as it is
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_reduced_precision_gives_the_float32_answer(precision):
    model = fuse_for_deployment(build_classifier(None, pretrained=True))
    labels = {str(i): [f"n{i:08d}", f"class {i}"] for i in range(1000)}
    full = ClassifierService(model, labels, "lite0_baseline", "1.0")
    reduced = ClassifierService(fuse_for_deployment(build_classifier(None, pretrained=True)), labels,
                                "lite0_baseline", "1.0", precision=precision)
    body = encode(Image.fromarray(data.chelsea()), quality=75)
    inputs = [full.decode(body)]
    want, got = full.predict(full.batch(inputs)), reduced.predict(reduced.batch(inputs))
    assert got.dtype == torch.float32 and next(reduced.model.parameters()).dtype != torch.float32
    assert got.argmax() == want.argmax()
    assert (got - want).abs().max() < 0.05


def test_allocator_keeps_freed_memory_on_glibc():
    import platform

    from afdserve.serving.allocator import keep_freed_memory

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("the thresholds are glibc's")
    assert keep_freed_memory() and keep_freed_memory()  # and a second call is harmless


def test_worker_process_runs_numpy_blas_on_one_thread():
    from threadpoolctl import threadpool_info

    from afdserve.serving.worker_process import single_threaded_blas

    torch_threads = torch.get_num_threads()
    assert single_threaded_blas()
    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert blas and all(lib["num_threads"] == 1 for lib in blas)
    assert torch.get_num_threads() == torch_threads  # the model's pool is torch's, left alone


def test_build_takes_serving_settings(tmp_path, capsys):
    import zipfile

    import yaml

    from afdserve.cli import main

    assert main(["build", "--models", "lite0_baseline", "--version", "0.1", "--model-store", str(tmp_path),
                 "--workers", "2", "--threads", "1", "--batch-size", "2", "--max-batch-delay-ms", "3",
                 "--cpu-precision", "bfloat16", "--gpu-decode", "--prepare-threads", "2"]) == 0
    with zipfile.ZipFile(tmp_path / "lite0_baseline.0.1.mar") as z:
        config = yaml.safe_load(z.read("model-config.yaml"))
    assert (config["minWorkers"], config["maxWorkers"], config["batchSize"], config["maxBatchDelay"]) == (2, 2, 2, 3)
    assert config["afdserve"]["threads"] == 1
    assert config["afdserve"]["precision"] == {"cpu": "bfloat16", "cuda": "float16"}
    assert config["afdserve"]["gpu_decode"] is True and config["afdserve"]["prepare_threads"] == 2
    assert "set at build time" in config["afdserve"]["serving_reason"]
    # A bad value is refused with a message, not a traceback.
    assert main(["build", "--models", "lite0_baseline", "--version", "0.2", "--model-store", str(tmp_path),
                 "--batch-size", "0"]) == 2
    assert "batch size" in capsys.readouterr().err


def test_build_missing_keeps_current_archives_and_rebuilds_those_of_other_code(tmp_path, capsys):
    import json

    from afdserve.cli import main

    build = ["build", "--missing", "--models", "lite0_baseline", "--version", "0.1", "--model-store", str(tmp_path)]
    assert main(build) == 0
    assert main(build) == 0
    assert "exists, kept" in capsys.readouterr().out
    # An archive built by an older afdserve (its manifest records other code, or none) is rebuilt.
    manifest = tmp_path / "lite0_baseline.0.1.manifest.json"
    older = json.loads(manifest.read_text())
    del older["library_sha256"]
    manifest.write_text(json.dumps(older))
    assert main(build) == 0
    assert "built by other afdserve code: rebuilding" in capsys.readouterr().out
    assert "library_sha256" in json.loads(manifest.read_text())


def test_classifier_only_flags_are_refused_for_the_restorer(tmp_path, capsys):
    from afdserve.cli import main

    assert main(["build", "--models", "swinir_restorer", "--version", "0.1", "--model-store", str(tmp_path),
                 "--gpu-decode", "--prepare-threads", "2"]) == 2
    assert "--gpu-decode, --prepare-threads: classifiers only" in capsys.readouterr().err


def test_restorer_serves_in_its_archive_precision():
    from afdserve.models.swinir import SwinIR, SwinIRConfig
    from afdserve.serving.restorer_service import RestorerService

    torch.manual_seed(0)
    tiny = SwinIRConfig(embed_dim=16, depths=(1,), num_heads=(2,), window_size=8, img_size=16)
    body = encode(Image.fromarray(data.chelsea()).resize((64, 48)), quality=30)
    state, outputs = SwinIR(tiny).state_dict(), {}
    for precision in ("float32", "bfloat16"):
        model = SwinIR(tiny)
        model.load_state_dict(state)
        service = RestorerService(model, "swinir_restorer", "0.1", precision=precision)
        assert next(service.model.parameters()).dtype == getattr(torch, precision)
        [reply] = service.handle([body])
        assert reply.status == 200
        outputs[precision] = np.asarray(Image.open(io.BytesIO(reply.body)), dtype=np.int16)
    assert np.abs(outputs["float32"] - outputs["bfloat16"]).max() <= 8  # levels of 255
@pytest.mark.parametrize("device, gpu_decode, expected", [("cpu", True, False), ("cuda", False, False),
                                                           ("cuda", True, True)])
def test_gpu_decode_is_used_only_on_gpu_workers_that_ask_for_it(monkeypatch, device, gpu_decode, expected):
    import afdserve.serving.classifier_service as cs

    # Loading the weights is not what is tested here, nor is a GPU needed to choose the path.
    monkeypatch.setattr(cs, "load_deployed", lambda afd, path, backbone=None: build_classifier(None, pretrained=False, deploy=True))
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: self)
    from afdserve.packaging.archive import PACKAGE_DIR

    settings = ServingConfig(gpu_decode=gpu_decode).settings()
    service = ClassifierService.from_model_dir(PACKAGE_DIR / "data", settings, "m", "1", device=device)
    assert service.decode_on_device is expected


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bfloat16_only_where_the_cpu_has_it(monkeypatch, native):
    from afdserve.serving import precision

    monkeypatch.setattr(precision, "has_native_bfloat16", lambda: native)
    assert precision.resolve_precision("auto", "cpu") == ("bfloat16" if native else "float32")
    assert precision.resolve_precision("auto", "cuda") == "float32"
    assert precision.resolve_precision("float16", "cpu") == "float16"  # explicit settings stay as asked
    assert precision.torch_dtype("auto") == (torch.bfloat16 if native else torch.float32)


def test_auto_is_a_cpu_setting_only_and_the_restorers_default():
    assert ServingConfig(cpu_precision="auto").settings()["precision"]["cpu"] == "auto"
    with pytest.raises(ValueError):
        ServingConfig(gpu_precision="auto")
    assert RESTORERS["swinir_restorer"].serving.cpu_precision == "auto"
    # In restore-then-classify the classifier, whose top-1 moves in bfloat16, keeps float32; its
    # restorer has a precision of its own, the restorer archive's.
    assert CLASSIFIERS["restore_classify"].serving.cpu_precision == "float32"
    assert CLASSIFIERS["restore_classify"].serving.restorer_cpu_precision == "auto"


def test_restore_then_classify_restores_and_classifies_each_in_its_own_precision():
    from afdserve.models.swinir import SwinIR, SwinIRConfig

    torch.manual_seed(0)
    tiny = SwinIRConfig(embed_dim=16, depths=(1,), num_heads=(2,), window_size=8, img_size=16)
    labels = {str(i): [f"n{i:08d}", f"class {i}"] for i in range(1000)}
    service = ClassifierService(fuse_for_deployment(build_classifier(None, pretrained=True)), labels,
                                "restore_classify", "0.1", restorer=SwinIR(tiny), restorer_precision="bfloat16")
    assert next(service.restorer.parameters()).dtype == torch.bfloat16
    assert next(service.model.parameters()).dtype == torch.float32
    body = encode(Image.fromarray(data.chelsea()).resize((96, 64)), quality=20)
    [reply] = service.handle([body])
    assert reply.status == 200


def test_restore_classify_archives_carry_the_restorers_precision(tmp_path, capsys):
    import zipfile

    import yaml

    from afdserve.cli import main

    assert main(["build", "--models", "restore_classify", "--version", "0.1", "--model-store", str(tmp_path),
                 "--restorer-cpu-precision", "float32"]) == 0
    with zipfile.ZipFile(tmp_path / "restore_classify.0.1.mar") as z:
        config = yaml.safe_load(z.read("model-config.yaml"))["afdserve"]
    assert config["precision"]["cpu"] == "float32"
    assert config["restorer"]["precision"] == {"cpu": "float32", "cuda": "float32"}
    # Elsewhere the flag would do nothing: refused.
    assert main(["build", "--models", "swinir_restorer", "--version", "0.1", "--model-store", str(tmp_path),
                 "--restorer-cpu-precision", "auto"]) == 2
    assert "only restore-then-classify archives" in capsys.readouterr().err
