"""`afdserve train-restorer` on a few generated photos: a tiny SwinIR for a few steps."""

import argparse
import json

import torch

from afdserve.train.restorer import RECORD, WEIGHTS, PatchRecipe, PatchSampler, add_arguments, run
from tests.images import encode, photo

TINY = ["--steps", "3", "--batch-size", "2", "--patch", "16", "--embed-dim", "8", "--depths", "1",
        "--heads", "2", "--warmup", "1", "--checkpoint-every", "1", "--log-every", "1", "--val-images", "1",
        "--no-progress", "--threads", "1"]


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(list(argv))
    return args


def photos(folder, n=3):
    folder.mkdir()
    for i in range(n):
        (folder / f"p{i}.png").write_bytes(encode(photo("coffee").resize((90 + 7 * i, 80)), fmt="PNG"))
    return folder


def test_patches_are_the_same_from_loader_workers(tmp_path):
    """Batch ``step`` depends on (seed, step) alone, so patches made in worker processes are the
    ones the training process would have made, and --resume sees the same stream."""
    images = [photo("coffee"), photo("chelsea")]
    sampler = PatchSampler(images, PatchRecipe(patch=16), seed=3, batch_size=2, steps=4)
    inline = [sampler[s] for s in range(4)]
    loader = torch.utils.data.DataLoader(sampler, batch_size=None, sampler=range(4), num_workers=2)
    for (jpeg, clean, quality), (j2, c2, q2) in zip(inline, loader):
        assert torch.equal(jpeg, j2) and torch.equal(clean, c2) and quality == q2


def test_trains_on_several_folders_with_workers(tmp_path):
    data = [photos(tmp_path / "a"), photos(tmp_path / "b", 2)]
    out = tmp_path / "run"
    record, stopped = run(parse("--data", *map(str, data), "--out", str(out), "--workers", "1", *TINY))
    assert stopped is None and record["completed"]
    assert (out / WEIGHTS).is_file()
    saved = json.loads((out / RECORD).read_text())
    assert [s["images"] for s in saved["data"]] == [3, 2]  # unlabelled folders: every photo
