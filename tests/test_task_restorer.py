"""Task-aware restorer training (`afdserve train-restorer --task-loss`): the restorer learns
through the frozen Lite0, which itself never changes; samples are classifier-sized and
reproducible; a tiny run completes and records its task settings."""

import csv
import json

import numpy as np
import pytest
import torch

from afdserve.imaging.preprocess import INPUT_SIZE, crop_box, image_tensor, input_crop, model_range
from afdserve.models.swinir import SwinIR, SwinIRConfig
from afdserve.train.restorer import RECORD, SUMMARY, WEIGHTS, run
from afdserve.train.task_restorer import (IGNORE_LABEL, TaskLoss, TaskRecipe, TaskSampler, frozen_classifier,
                                          make_task_sample, task_terms)
from tests.images import encode, photo
from tests.test_train_restorer import TINY, parse


@pytest.fixture(scope="module")
def classifier():
    torch.set_num_threads(1)
    return frozen_classifier()


def tiny_swinir() -> SwinIR:
    torch.manual_seed(0)
    return SwinIR(SwinIRConfig(embed_dim=8, depths=[1], num_heads=[2], window_size=8, img_size=16,
                               drop_path_rate=0.0))


def labelled_folder(folder, size=(120, 100), labels=(281, 967)):
    (folder / "images").mkdir(parents=True)
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class_index"])
        for i, (name, label) in enumerate(zip(["chelsea", "coffee"], labels)):
            (folder / "images" / f"p{i}.png").write_bytes(encode(photo(name).resize(size), fmt="PNG"))
            w.writerow([f"p{i}.png", label])
    return folder


def test_sample_is_the_classifier_crop_compressed():
    """The clean sample is a 224x224 crop of the resized photo, made by the serving geometry (the
    centre offset gives exactly what the classifier is served); the JPEG one differs from it."""
    im = photo("chelsea")
    jpeg, clean, quality = make_task_sample(im, np.random.default_rng(0), TaskRecipe(quality_range=(10, 10)))
    assert jpeg.shape == clean.shape == (3, INPUT_SIZE, INPUT_SIZE) and quality == 10
    assert 0.0 <= float(jpeg.min()) and float(jpeg.max()) <= 1.0
    assert (jpeg - clean).abs().mean() > 0.005
    assert crop_box(*im.size, offset=(80, 16)) == crop_box(*im.size)  # 451x300 -> 385x256, centred at (80, 16)
    served = torch.from_numpy(np.asarray(input_crop(im)).transpose(2, 0, 1).copy()).float() / 255
    assert torch.allclose(model_range(served), image_tensor(im), atol=1e-6)


def test_a_share_of_samples_is_nearly_clean_only_when_asked():
    im, rng = photo("chelsea"), np.random.default_rng(0)
    good = {make_task_sample(im, rng, TaskRecipe(high_quality_share=1.0))[2] for _ in range(4)}
    assert all(75 <= q <= 95 for q in good)
    # Share 0 (the default) draws nothing extra: runs from before the option see the same samples.
    first = make_task_sample(im, np.random.default_rng(3), TaskRecipe())
    assert first[2] == make_task_sample(im, np.random.default_rng(3), TaskRecipe(high_quality_share=0.0))[2]


def test_batches_are_a_function_of_seed_and_step():
    images, labels = [photo("coffee"), photo("chelsea")], [5, None]
    a = TaskSampler(images, labels, TaskRecipe(), seed=1, batch_size=2, steps=3)
    b = TaskSampler(images, labels, TaskRecipe(), seed=1, batch_size=2, steps=3)
    for step in (2, 0):
        (j1, c1, q1, y1), (j2, c2, q2, y2) = a[step], b[step]
        assert torch.equal(j1, j2) and torch.equal(c1, c2) and q1 == q2 and torch.equal(y1, y2)
    assert sorted(a[0][3].tolist()) == [IGNORE_LABEL, 5]  # one epoch: both images, the unlabelled ignored
    loader = torch.utils.data.DataLoader(a, batch_size=None, sampler=range(1, 3), num_workers=1)
    for step, (jpeg, clean, quality, labels) in zip((1, 2), loader):  # as --workers makes them
        j, c, q, y = a[step]
        assert torch.equal(jpeg, j) and torch.equal(clean, c) and quality == q and torch.equal(labels, y)


def test_one_step_lowers_the_task_loss_and_leaves_the_classifier_alone(classifier):
    sampler = TaskSampler([photo("chelsea"), photo("coffee")], [281, 967], TaskRecipe(quality_range=(5, 5)),
                          seed=0, batch_size=2)
    jpeg, clean, _, labels = sampler[0]
    jpeg, clean = jpeg[:, :, :64, :64].contiguous(), clean[:, :, :64, :64].contiguous()  # a quick step
    restorer = tiny_swinir().train()
    settings = TaskLoss(kind="kl+ce", weight=1.0)
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    optimizer = torch.optim.Adam(restorer.parameters(), lr=1e-3)

    def task_loss():
        return task_terms(classifier, restorer(jpeg), clean, labels, settings)

    first = task_loss()
    assert set(first) == {"kl", "ce", "task"} and first["kl"] > 0
    first["task"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in restorer.parameters() if p.requires_grad)
    assert all(p.grad is None and not p.requires_grad for p in classifier.parameters())
    optimizer.step()
    with torch.no_grad():
        after = task_loss()
    assert after["task"] < first["task"]
    assert not classifier.training and not any(m.training for m in classifier.modules())
    assert all(torch.equal(before[k], v) for k, v in classifier.state_dict().items())  # BN statistics too


def test_unlabelled_batch_gives_no_cross_entropy(classifier):
    clean = torch.rand(2, 3, 32, 32)
    terms = task_terms(classifier, clean.clone().requires_grad_(), clean, torch.full((2,), IGNORE_LABEL),
                       TaskLoss(kind="kl+ce"))
    assert terms["ce"] == 0 and terms["kl"].abs() < 1e-5


def test_run_with_task_loss_writes_its_record(tmp_path):
    data, val, out = labelled_folder(tmp_path / "train"), labelled_folder(tmp_path / "val", (64, 48)), tmp_path / "run"
    args = parse("--data", str(data), "--val-fraction", "0", "--val", str(val), "--out", str(out),
                 "--task-loss", "kl", "--task-weight", "0.5", "--temperature", "2", *TINY)
    args.steps, args.batch_size = 2, 1
    record, stopped = run(args)
    assert stopped is None and record["completed"] and (out / WEIGHTS).is_file()
    saved = json.loads((out / RECORD).read_text())
    assert saved["task_loss"]["kind"] == "kl" and saved["task_loss"]["weight"] == 0.5
    assert saved["task_loss"]["temperature"] == 2.0 and saved["recipe"]["size"] == INPUT_SIZE
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert {"pixel", "kl", "task", "loss"} <= set(log[-1])
    assert [row["quality"] for row in saved["validation_task"]] == ["clean", 10, 40]
    assert "task `kl`" in (out / SUMMARY).read_text()


def test_cross_entropy_needs_labels(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(encode(photo("coffee").resize((60, 40)), fmt="PNG"))
    args = parse("--data", str(folder), "--out", str(tmp_path / "run"), "--task-loss", "kl+ce", *TINY)
    with pytest.raises(SystemExit, match="labelled"):
        run(args)


def test_checkpoint_from_before_task_loss_resumes(tmp_path):
    """A restorer checkpoint whose args predate --task-loss resumes as the plain run it was."""
    data, out = labelled_folder(tmp_path / "train"), tmp_path / "run"
    argv = ["--data", str(data), "--val-fraction", "0", "--out", str(out), *TINY]
    _, stopped = run(parse(*argv, "--pause-at", "1"))
    assert stopped == "pause-at"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    for name in ("task_loss", "task_weight", "temperature", "ce_weight"):
        del state["args"][name]
    torch.save(state, out / "checkpoint.pt")
    record, stopped = run(parse(*argv, "--resume"))
    assert stopped is None and record["steps"] == 3 and record["task_loss"] is None


def test_restore_then_classify_report_takes_an_unseen_folder_whole_and_keeps_each_hit(labelled_photos):
    """A folder none of afd_v1's photos are in (as imagenet-val-1000) is evaluated whole, and
    each photo's hit is kept in file order, so reports of several restorers can be paired."""
    from afdserve.evaluation.restorer_report import RELEASE_DIR, evaluate_classification
    from afdserve.serving.restoration import TileSpec

    torch.manual_seed(0)
    restorer = SwinIR(SwinIRConfig(embed_dim=16, depths=(1,), num_heads=(2,), window_size=8, img_size=16)).eval()
    report = evaluate_classification(restorer, TileSpec(), RELEASE_DIR / "afd_v1.json", labelled_photos,
                                     [None, 10], ["P1"], limit=0, resamples=50)
    assert report["images"] == 6 and report["files"] == sorted(report["files"])
    for row in report["rows"]:
        assert set(row["hits"]) == {"plain", "afd", "restored"}
        for name, hits in row["hits"].items():
            assert len(hits) == 6 and set(hits) <= {"0", "1"}
            assert hits.count("1") / 6 == pytest.approx(row[f"{name}_top1"])
