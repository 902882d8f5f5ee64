"""`afdserve train` on a handful of generated photos: a few steps at batch 2 with a tiny module."""

import argparse
import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from afdserve.data.folders import LabelledImage, load_labelled_folder
from afdserve.data.splits import split_images, split_key, training_set
from afdserve.train import loop
from afdserve.train.loop import CHECKPOINT, TRAIN_LOG
from afdserve.imaging.preprocess import resized_dct_tensor
from afdserve.models.afd import AFDConfig, AFDModule
from afdserve.models.efficientnet_lite import create_lite0
from afdserve.train.afd import (RECORD, SPLIT, SUMMARY, WEIGHTS, CompressedPairs,
                               PairRecipe, add_commands, add_train_arguments, make_pair, run_training)
from tests.images import encode, photo

VAL_FRACTION = 0.3
# photo_2, photo_5 and photo_7 hash below 0.3: three validation files, five training files.
NAMES = [f"photo_{i}.jpg" for i in range(8)]
TINY = ["--steps", "3", "--batch-size", "2", "--width", "4", "--workers", "0", "--warmup", "1",
        "--checkpoint-every", "1", "--log-every", "1", "--val-qualities", "10", "--no-progress",
        "--threads", "1"]  # one thread: fast and steady also when other work shares the cores


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labelled")
    (folder / "images").mkdir()
    sources = [photo("chelsea"), photo("coffee"), photo("camera").convert("RGB")]
    with open(folder / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "class_index"])
        for i, name in enumerate(NAMES):
            im = sources[i % 3]
            # Different crops and sizes, so the files differ and not all are multiples of 8.
            im = im.crop((7 * i, 5 * i, im.width - 3 * i, im.height - 2 * i)).resize((260 + 3 * i, 230 + 5 * i))
            (folder / "images" / name).write_bytes(encode(im, quality=90))
            writer.writerow([name, 281 + i])
    return folder


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "straight"
    return run_training(parse("--data", str(data_dir), "--out", str(out), *TINY))


def test_writes_weights_record_and_split(trained, data_dir):
    out = trained.out_dir
    for name in (WEIGHTS, RECORD, SUMMARY, SPLIT, TRAIN_LOG, CHECKPOINT):
        assert (out / name).is_file(), name
    record = json.loads((out / RECORD).read_text())
    assert trained.completed and record["steps"] == 3 and record["completed"]
    assert record["afd_config"] == {"channels": 32, "width": 4, "gate": "spatial", "use_quality": True,
                                    "insert_after": "stem", "dct_source": "file-grid", "fe_downscale": 1}
    assert record["dct_source"] == "file-grid"
    assert record["split"]["train_images"] == 5 and record["split"]["val_images"] == 3
    assert record["args"]["batch_size"] == 2 and record["seed"] == 0
    assert set(record["final_losses_last_50_steps"]) == {"kd", "feature", "loss"}
    (row,) = record["validation"]
    assert row["quality"] == 10 and row["images"] == 3 and 0 <= row["top1_afd"] <= 1

    state = torch.load(out / WEIGHTS, map_location="cpu", weights_only=True)
    assert all(type(v) is torch.Tensor for v in state.values())
    module = AFDModule(AFDConfig.from_dict(record["afd_config"]))
    module.load_state_dict(state, strict=True)
    # Unfused (the training form): archive building fuses it later.
    assert "fe.out.point_1x1.weight" in state


def test_only_the_afd_module_learns(trained):
    fresh = create_lite0(pretrained=True).state_dict()
    trained_backbone = trained.student.backbone.state_dict()
    assert fresh.keys() == trained_backbone.keys()
    for key, value in fresh.items():  # weights and batch-norm running statistics alike
        assert torch.equal(trained_backbone[key], value), key
    # FE-Net's last block starts at exactly zero; after training it no longer is.
    assert trained.student.afd.fe.out.point_1x1.weight.abs().sum() > 0


def test_split_keeps_validation_out_of_training(trained, data_dir):
    split = json.loads((trained.out_dir / SPLIT).read_text())
    assert not set(split["train"]) & set(split["val"])
    assert sorted(split["train"] + split["val"]) == sorted(NAMES)
    assert sorted(split["val"]) == sorted(n for n in NAMES if split_key(n) < VAL_FRACTION)

    train, val = split_images(load_labelled_folder(data_dir), VAL_FRACTION)
    pairs = CompressedPairs(train, PairRecipe(), seed=0, samples=40)
    seen = [pairs.paths[pairs.image_index(k)].name for k in range(40)]
    assert set(seen) == set(split["train"])  # every training file, and nothing else
    assert sorted(seen[:5]) == sorted(split["train"])  # each exactly once per epoch

    # A file's side depends on its own name only: more files never move it.
    more = load_labelled_folder(data_dir) + [LabelledImage(data_dir / "images" / f"x{i}.jpg", 0)
                                             for i in range(50)]
    train2, val2 = split_images(more, VAL_FRACTION)
    assert {i.path.name for i in val} <= {i.path.name for i in val2}
    assert {i.path.name for i in train} <= {i.path.name for i in train2}


def test_resume_continues_from_the_checkpoint_exactly(trained, data_dir, tmp_path):
    out = tmp_path / "resumed"
    paused = run_training(parse("--data", str(data_dir), "--out", str(out), *TINY, "--pause-at", "2"))
    assert not paused.completed and paused.stopped == "pause-at"
    assert torch.load(out / CHECKPOINT, weights_only=True)["step"] == 2
    assert not (out / WEIGHTS).exists()

    resumed = run_training(parse("--data", str(data_dir), "--out", str(out), *TINY, "--resume"))
    assert resumed.completed and resumed.record["steps"] == 3
    steps = [json.loads(line)["step"] for line in (out / TRAIN_LOG).read_text().splitlines()]
    assert steps == [1, 2, 3]
    # Same samples, same optimiser and schedule state: the same weights as without the pause.
    a = torch.load(out / WEIGHTS, weights_only=True)
    b = torch.load(trained.out_dir / WEIGHTS, weights_only=True)
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)

    with pytest.raises(SystemExit, match="lr"):  # a different recipe cannot resume this run
        run_training(parse("--data", str(data_dir), "--out", str(out), *TINY, "--resume", "--lr", "0.1"))


def test_max_minutes_caps_this_invocation_not_the_whole_run(data_dir, tmp_path):
    out = tmp_path / "capped"
    run_training(parse("--data", str(data_dir), "--out", str(out), *TINY, "--pause-at", "1"))
    checkpoint = torch.load(out / CHECKPOINT, weights_only=True)
    checkpoint["elapsed_s"] = 3600.0  # the run has already trained an hour in earlier sessions
    torch.save(checkpoint, out / CHECKPOINT)
    resumed = run_training(parse("--data", str(data_dir), "--out", str(out), *TINY, "--resume", "--max-minutes", "5"))
    assert resumed.completed and resumed.record["steps"] == 3


def test_a_run_folder_is_resumed_never_started_over(trained, data_dir):
    before = (trained.out_dir / WEIGHTS).read_bytes()
    with pytest.raises(SystemExit, match="--resume continues it"):
        run_training(parse("--data", str(data_dir), "--out", str(trained.out_dir), *TINY))
    assert (trained.out_dir / WEIGHTS).read_bytes() == before


def test_a_run_folder_being_trained_is_not_trained_twice(data_dir, tmp_path):
    out = tmp_path / "busy"
    run_training(parse("--data", str(data_dir), "--out", str(out), *TINY, "--pause-at", "1"))
    resume = parse("--data", str(data_dir), "--out", str(out), *TINY, "--resume")
    before = (out / CHECKPOINT).read_bytes()
    with loop.run_folder(resume, out):  # as another process training it would
        with pytest.raises(SystemExit, match="being trained by another process"):
            run_training(resume)
    assert (out / CHECKPOINT).read_bytes() == before
    assert run_training(resume).completed  # free again once that training ends


def test_sigterm_checkpoints_the_last_whole_step(data_dir, tmp_path):
    """`kill` stops a run the way Ctrl-C does: a background job of a script ignores SIGINT."""
    out = tmp_path / "killed"
    steps = [a if a != "3" else "100000" for a in TINY]
    trainer = subprocess.Popen([sys.executable, "-m", "afdserve.cli", "train", "--data", str(data_dir),
                                "--out", str(out), *steps], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / TRAIN_LOG).exists() or not (out / TRAIN_LOG).read_text().strip():
            if trainer.poll() is not None or time.monotonic() > deadline:
                trainer.kill()
                pytest.fail(f"no step logged: {trainer.communicate()[0]}")
            time.sleep(0.2)
        trainer.send_signal(signal.SIGTERM)
        output, _ = trainer.communicate(timeout=60)
    finally:
        trainer.kill()
    assert trainer.returncode == 130, output
    logged = [json.loads(line)["step"] for line in (out / TRAIN_LOG).read_text().splitlines()]
    assert torch.load(out / CHECKPOINT, weights_only=True)["step"] == logged[-1]
    assert "terminated: checkpoint at step" in output and not (out / WEIGHTS).exists()


def test_the_record_keeps_every_sitting_of_a_resumed_run(data_dir, tmp_path):
    out = tmp_path / "sittings"
    run_training(parse("--data", str(data_dir), "--out", str(out), *TINY, "--pause-at", "1"))
    lengthened = [a if a != "3" else "4" for a in TINY]  # --steps 3 -> 4: the cosine is recomputed
    resumed = run_training(parse("--data", str(data_dir), "--out", str(out), *lengthened, "--resume"))
    sittings = resumed.record["sittings"]
    assert [(s["from_step"], s["to_step"], s["schedule_steps"]) for s in sittings] == [(0, 1, 3), (1, 4, 4)]
    assert all(s["threads"] == 1 and s["device"] == "cpu" and s["seconds"] >= 0 for s in sittings)
    assert "2 sittings: steps 0-1 on cpu (1 thread," in (out / SUMMARY).read_text()


def test_student_and_teacher_share_the_geometry():
    recipe = PairRecipe(quality_range=(95, 95), shorter_side=(224, 300), high_quality_share=0)
    student, teacher, quality = make_pair(photo("coffee"), np.random.default_rng(1), recipe)
    assert quality == 95 and student.quality == 95  # estimated from the file's tables
    assert student.image.shape == teacher.shape == (3, 224, 224)
    assert student.dct.shape == (192, 28, 28)
    # At quality 95 the JPEG is nearly the clean crop: misaligned geometry would show here.
    assert (student.image - teacher).abs().mean() < 0.02

    low = make_pair(photo("coffee"), np.random.default_rng(1),
                    PairRecipe(quality_range=(5, 5), high_quality_share=0))[0]
    assert low.quality == 5 and (low.image - teacher).abs().mean() > 0.02


def test_quality_draws():
    rng = np.random.default_rng(0)
    draws = [PairRecipe(high_quality_share=0).draw_quality(rng) for _ in range(2000)]
    assert min(draws) == 5 and max(draws) == 50
    assert np.mean(np.array(draws) <= 15) > 0.45  # log-uniform: half the draws at 5-15
    mixed = PairRecipe(high_quality_share=0.25, high_quality_range=(80, 90))
    draws = np.array([mixed.draw_quality(rng) for _ in range(2000)])
    assert set(draws[draws > 50]) <= set(range(80, 91)) and 0.2 < np.mean(draws > 50) < 0.3


def test_resized_dct_is_the_dct_of_the_model_input():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    image = torch.from_numpy(pixels).permute(2, 0, 1).float().div(127.5).sub(1.0)
    coeffs = resized_dct_tensor(image)
    assert coeffs.shape == (192, 28, 28)
    # The DC of an orthonormal 8x8 DCT is 8 x the block mean (after the (v - 128) / 128 shift).
    y = torch.from_numpy(pixels.astype(np.float64)) @ torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
    block_mean = y.reshape(28, 8, 28, 8).mean(dim=(1, 3))
    torch.testing.assert_close(coeffs[0].double(), 8 * (block_mean - 128) / 128, atol=1e-4, rtol=0)
    # Batched input works the same.
    assert resized_dct_tensor(image[None]).shape == (1, 192, 28, 28)


def test_resized_dct_source_trains(data_dir, tmp_path):
    result = run_training(parse("--data", str(data_dir), "--out", str(tmp_path / "r"), *TINY,
                                "--steps", "1", "--dct-source", "resized", "--loss", "both",
                                "--gate", "global", "--no-quality", "--insert-after", "blocks.1"))
    record = result.record
    assert record["dct_source"] == "resized"
    assert record["afd_config"]["channels"] == 24  # derived from the backbone, not a table
    assert set(record["final_losses_last_50_steps"]) == {"kd", "feature", "loss"}


def test_train_command_is_registered():
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--loss", "feature", "--insert-after", "blocks.0"])
    assert args.func.__name__ == "cmd_train" and args.loss == "feature" and args.val_fraction == 0.3


def test_several_folders_labelled_or_not_and_a_validation_folder(data_dir, tmp_path):
    """An unlabelled folder gives every photo, a labelled one its training split only; a
    validation folder is taken whole and must share no photo with training."""
    unlabelled = tmp_path / "photos"
    unlabelled.mkdir()
    for i in range(3):
        (unlabelled / f"free_{i}.jpg").write_bytes(encode(photo("coffee").resize((240 + 8 * i, 240)), quality=90))
    val_dir = tmp_path / "val"
    (val_dir / "images").mkdir(parents=True)
    (val_dir / "images" / "held.jpg").write_bytes(encode(photo("chelsea").resize((250, 230)), quality=85))
    (val_dir / "labels.csv").write_text("file,class_index\nheld.jpg,7\n")

    train, val, sources = training_set([data_dir, unlabelled], VAL_FRACTION, val_dir)
    labelled_train, _ = split_images(load_labelled_folder(data_dir), VAL_FRACTION)
    assert len(train) == len(labelled_train) + 3
    assert [(s["labelled"], s["images"]) for s in sources] == [(True, len(labelled_train)), (False, 3)]
    assert [(v.path.name, v.label) for v in val] == [("held.jpg", 7)]

    result = run_training(parse("--data", str(data_dir), str(unlabelled), "--val", str(val_dir),
                                "--out", str(tmp_path / "run"), *TINY))
    assert result.record["split"]["train_images"] == len(train) and result.record["split"]["val_images"] == 1
    assert [s["folder"] for s in result.record["data"]] == [str(data_dir.resolve()), str(unlabelled.resolve())]

    # The same photo under another name in training: refused.
    (unlabelled / "copy.jpg").write_bytes((val_dir / "images" / "held.jpg").read_bytes())
    with pytest.raises(SystemExit, match="also a validation photo"):
        training_set([unlabelled], VAL_FRACTION, val_dir)
    evaluation_only = tmp_path / "imagenet-val-1000"
    unlabelled.rename(evaluation_only)
    with pytest.raises(SystemExit, match="evaluation only"):
        training_set([evaluation_only], VAL_FRACTION)


def test_a_run_is_evaluated_on_a_folder_it_never_saw_whole(trained, data_dir, tmp_path):
    from afdserve.evaluation.afd_report import evaluation_images, load_run

    run = load_run(trained.out_dir)
    own = {i.path.name: i for i in load_labelled_folder(data_dir)}
    assert sorted(i.path.name for i in evaluation_images(run, own, data_dir)) == sorted(run.val_files)
    unseen = {f"other_{i}.jpg": LabelledImage(tmp_path / f"other_{i}.jpg", i) for i in range(3)}
    assert len(evaluation_images(run, unseen, tmp_path)) == 3
    trained_name = next(name for name in own if name not in run.val_files)
    with pytest.raises(SystemExit, match="training photos"):
        evaluation_images(run, {**unseen, trained_name: own[trained_name]}, tmp_path)


def test_matching_a_later_stage_adds_its_term(data_dir, tmp_path):
    result = run_training(parse("--data", str(data_dir), "--out", str(tmp_path / "later"), *TINY,
                                "--match-later", "blocks.2"))
    logged = [json.loads(line) for line in (result.out_dir / TRAIN_LOG).read_text().splitlines()]
    assert all(row["feature_later"] > 0 for row in logged if "loss" in row)
    assert result.record["args"]["match_later"] == "blocks.2"
