"""The one training loop both recipes run: resume checks, checkpoints, the jsonl log, the
progress bar, ``--pause-at``, ``--max-minutes``, Ctrl-C and SIGTERM, with the RNG state and the thread
setting handled the same way for every model.

A recipe gives the loop its modules and optimiser, its batches from a step on, and the losses of
one batch (a dict with ``"loss"``, which is back-propagated); the loop gives back where it
stopped. The recipe then writes its weights and record (with ``atomic_write_text``).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import math
import os
import platform
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import afdserve
from afdserve.data.folders import DEFAULT_DATA_DIR
from afdserve.util.files import atomic_write, atomic_write_text

CHECKPOINT = "checkpoint.pt"
TRAIN_LOG = "train_log.jsonl"
RECENT_STEPS = 50  # the losses of the last steps, averaged into the record

# Arguments that may differ between an interrupted run and its --resume (every other one shapes
# the result and must match); recipes add their own (workers, validation sizes).
RUN_CONTROL_ARGS = {"resume", "out", "name", "no_progress", "threads", "device", "max_minutes", "pause_at",
                    "checkpoint_every", "log_every", "func", "command"}


def add_data_arguments(g, several: bool = False) -> None:
    """The labelled images and the held-out share: the same split for every recipe. ``several``:
    ``--data`` takes several folders, labelled or not, and ``--val`` a validation folder."""
    if several:
        g.add_argument("--data", type=Path, nargs="+", default=[DEFAULT_DATA_DIR], metavar="DIR",
                       help="training folders: with labels.csv (its training split is taken) or any folder "
                            "of images (all are taken) (default: ../shared/data/imagenet-samples)")
        g.add_argument("--val", type=Path, default=None, metavar="DIR",
                       help="labelled validation folder, all of it (default: the validation split of the "
                            "first labelled --data folder)")
    else:
        g.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR,
                       help="folder with labels.csv and images/ (default: ../shared/data/imagenet-samples)")
    g.add_argument("--val-fraction", type=float, default=0.3,
                   help="share of files held out for validation, chosen by file-name hash; the same "
                        "split for every model (default 0.3)")


def add_run_control_arguments(g) -> None:
    """Resuming, checkpoints, stopping early and where to run: shared by every training command."""
    g.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    g.add_argument("--checkpoint-every", type=int, default=100)
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--pause-at", type=int, default=None,
                   help="stop after this step with a checkpoint (continue later with --resume)")
    g.add_argument("--max-minutes", type=float, default=0,
                   help="wall-clock cap on this invocation (a --resume gets it afresh): stop early "
                        "(checkpoint, weights, record) after this long")
    g.add_argument("--device", default="auto", help="auto (cuda if there is one), cpu or cuda")
    g.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")


def _plain(value):
    """Argument values as JSON-friendly plain types (Paths to str, tuples to lists)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def args_dict(args) -> dict:
    return {k: _plain(v) for k, v in sorted(vars(args).items()) if k not in ("func", "command")}


def image_index(seed: int, k: int, count: int) -> int:
    """Which of ``count`` training images sample ``k`` of the run takes: each epoch visits them
    all, in a permutation drawn from (seed, epoch), so sample k is a pure function of (seed, k)
    and neither loader workers nor --resume change the stream. The sample's own augmentation
    draws from ``numpy.random.default_rng([seed, 1, k])``."""
    epoch, position = divmod(k, count)
    return int(np.random.default_rng([seed, 0, epoch]).permutation(count)[position])


class StepBatches(torch.utils.data.Dataset):
    """A dataset whose item ``step`` is that step's whole batch, ``batch(step, batch_size)``: a
    DataLoader with ``batch_size=None`` and ``sampler=range(start, stop)`` then hands the loop
    one batch per step, made in its worker processes. Subclasses define ``batch``."""

    def __init__(self, batch_size: int, steps: int):
        self.batch_size, self.steps = batch_size, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int):
        return self.batch(step, self.batch_size)

    def batch(self, step: int, size: int):
        raise NotImplementedError


def atomic_torch_save(obj, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))  # a crash mid-write never leaves a half checkpoint


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_factor(step: int, steps: int, warmup: int, floor: float = 0.01) -> float:
    """Linear warm-up, then cosine down to ``floor`` of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@contextlib.contextmanager
def torch_threads(threads: int):
    """``threads`` torch threads (0: one per core) while training; the caller's setting after, so a
    library call does not leave the process changed. Yields the count in force."""
    previous = torch.get_num_threads()
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)


def provenance(args, device: torch.device, threads: int) -> dict:
    """What every run's record says about how and where it ran."""
    return {"seed": args.seed, "args": args_dict(args), "library_version": afdserve.__version__,
            "torch_version": torch.__version__, "device": str(device), "threads": threads,
            "host": platform.node(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_record(out_dir: Path, record: dict, record_name: str, summary: str, summary_name: str) -> None:
    """The run's JSON record and its Markdown summary, each written atomically."""
    atomic_write_text(out_dir / record_name, json.dumps(record, indent=2))
    atomic_write_text(out_dir / summary_name, summary)


def truncate_log(path: Path, step: int) -> None:
    # Steps logged after the checkpoint will be trained again: drop them.
    if path.exists():
        lines = [line for line in path.read_text().splitlines()
                 if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in lines))


@dataclass
class Run:
    """What the loop trains and how; ``modules`` are saved in the checkpoint under their names."""

    args: object  # the parsed command line: steps, batch_size, pause_at, max_minutes, ...
    out_dir: Path
    modules: dict[str, torch.nn.Module]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    losses: Callable[[object], dict[str, torch.Tensor]]  # one batch -> {"loss": ..., other terms}
    batches: Callable[[int, int], Iterable]  # (first step, stop step) -> one batch per step
    params: list  # clipped to ``clip`` (0: not clipped)
    clip: float = 0.0
    unit: str = "img"  # what a batch holds, for the progress bar's rate: img, patch
    rate_key: str = "images_per_s"  # the rate's name in the log
    resumable: set = field(default_factory=set)  # beside RUN_CONTROL_ARGS
    checkpoint_extra: dict = field(default_factory=dict)
    # Arguments added to a recipe after some of its checkpoints were written, with the value that
    # reproduces what those runs did: a checkpoint without one resumes as if it had said that.
    added_args: dict = field(default_factory=dict)


@dataclass
class Outcome:
    step: int
    elapsed_s: float
    recent: list[dict]  # the losses of the last RECENT_STEPS steps
    stopped: str | None  # None: every step done; "pause-at", "max-minutes" or "interrupted"
    session_images: int
    session_seconds: float
    sittings: list[dict]  # every invocation of the run: steps, schedule length, device, threads, seconds

    @property
    def completed(self) -> bool:
        return self.stopped is None

    @property
    def to_be_continued(self) -> bool:
        """Paused or interrupted: --resume continues, and no weights or record are written."""
        return self.stopped in ("pause-at", "interrupted")

    def mean_recent(self) -> dict[str, float]:
        keys = self.recent[0] if self.recent else {}
        return {k: sum(r[k] for r in self.recent) / len(self.recent) for k in keys}


def _load_checkpoint(run: Run) -> tuple[int, float, list, list]:
    path = run.out_dir / CHECKPOINT
    if not path.exists():
        raise SystemExit(f"--resume: no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved, now = {**run.added_args, **state["args"]}, args_dict(run.args)
    allowed = RUN_CONTROL_ARGS | run.resumable
    changed = sorted(k for k in set(saved) | set(now) if k not in allowed and saved.get(k) != now.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
        raise SystemExit(f"--resume with different settings than the checkpoint ({detail})")
    if saved.get("steps") != now.get("steps"):
        # Only where the recipe allows it: the cosine is recomputed over the new length, so the
        # learning rate moves once at the resumed step (the log's lr column shows it).
        print(f"--resume: schedule length {saved.get('steps')} -> {now.get('steps')} steps", flush=True)
    for name, module in run.modules.items():
        module.load_state_dict(state[name])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if "torch_rng" in state:  # restorer checkpoints written before the loop was shared lack it
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    recent = [r if isinstance(r, dict) else {"loss": r} for r in state["recent"]]
    # Checkpoints written before sittings were kept: their history is one unknown stretch.
    sittings = state.get("sittings") or [{"from_step": 0, "to_step": state["step"], "recorded": False}]
    return state["step"], state["elapsed_s"], recent, sittings


@contextlib.contextmanager
def run_folder(args, out_dir: Path):
    """The run folder, held for one training at a time. Recipes train inside it and write nothing
    there before it is entered.

    A folder with a checkpoint is continued (--resume), never started over: that would overwrite
    hours of training. And while one process trains it, a second (a script started twice, a
    --resume in another terminal) is refused: both would write the same checkpoint and log. The
    lock is the kernel's (flock on the folder), so a process that dies leaves none behind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"{out_dir} is being trained by another process; wait for it or stop it "
                             "(kill: it checkpoints), then --resume") from None
        if not args.resume and (out_dir / CHECKPOINT).exists():
            raise SystemExit(f"{out_dir} already holds a run (its {CHECKPOINT}): --resume continues it; "
                             "to start over, remove the folder or give another --out")
        yield out_dir
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def termination_flag():
    """A SIGTERM (``kill``, a scheduler's stop) sets the flag instead of ending the process, so
    the loop finishes its step and checkpoints. Ctrl-C alone is not enough: a job started in the
    background of a non-interactive shell ignores SIGINT."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may
        yield flag
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: flag.set())
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def train(run: Run) -> Outcome:
    """Train from the start (or the checkpoint, with --resume) to --steps, --pause-at, the
    --max-minutes cap, Ctrl-C or SIGTERM, whichever comes first; the checkpoint always holds the
    last step."""
    args, out_dir = run.args, run.out_dir
    step, elapsed, recent, sittings, log_mode = 0, 0.0, [], [], "w"
    if args.resume:
        step, elapsed, recent, sittings = _load_checkpoint(run)
        log_mode = "a"
        truncate_log(out_dir / TRAIN_LOG, step)
        print(f"resuming {out_dir} at step {step}/{args.steps}", flush=True)
    recent = collections.deque(recent, maxlen=RECENT_STEPS)
    # Each invocation is a sitting: the record keeps them all, so a run trained over several
    # sessions says where each ran, on how many threads, and when its schedule length changed.
    device = next((p.device for m in run.modules.values() for p in m.parameters()), torch.device("cpu"))
    sitting = {"from_step": step, "schedule_steps": args.steps, "device": str(device),
               "threads": torch.get_num_threads(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    session_start, session_images = time.perf_counter(), 0

    def all_sittings() -> list[dict]:
        return sittings + [{**sitting, "to_step": step, "seconds": round(time.perf_counter() - session_start, 1)}]

    def save_checkpoint():
        atomic_torch_save({
            "step": step, "elapsed_s": elapsed, "recent": list(recent), "args": args_dict(args),
            **run.checkpoint_extra, **{name: m.state_dict() for name, m in run.modules.items()},
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "sittings": all_sittings(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }, out_dir / CHECKPOINT)

    stop = args.steps if args.pause_at is None else min(args.steps, args.pause_at)
    stopped = None
    bar = tqdm(total=args.steps, initial=step, desc=f"train {out_dir.name}", unit="step",
               dynamic_ncols=True, disable=args.no_progress)
    smoothed = None
    with open(out_dir / TRAIN_LOG, log_mode) as log, termination_flag() as terminated:
        try:
            last = time.perf_counter()
            for batch in run.batches(step, stop):
                losses = run.losses(batch)
                run.optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                if run.clip:
                    torch.nn.utils.clip_grad_norm_(run.params, run.clip)
                run.optimizer.step()
                run.scheduler.step()
                step += 1
                now = time.perf_counter()
                elapsed += now - last
                last = now
                session_images += args.batch_size
                values = {k: v.item() for k, v in losses.items()}
                recent.append(values)
                smoothed = values["loss"] if smoothed is None else 0.95 * smoothed + 0.05 * values["loss"]
                rate = session_images / (now - session_start)
                bar.set_postfix(loss=f"{smoothed:.4f}", **{f"{run.unit}_s": f"{rate:.1f}"}, refresh=False)
                bar.update(1)
                if step % args.log_every == 0 or step == stop:
                    log.write(json.dumps({"step": step, "lr": run.scheduler.get_last_lr()[0],
                                          "elapsed_s": round(elapsed, 2), run.rate_key: round(rate, 2),
                                          **{k: round(v, 6) for k, v in values.items()}}) + "\n")
                    log.flush()
                if step % args.checkpoint_every == 0 or step == stop:
                    save_checkpoint()
                # This invocation's minutes, not the run's: a resumed run gets its cap afresh.
                if args.max_minutes and now - session_start > 60 * args.max_minutes and step < stop:
                    print(f"\n--max-minutes {args.max_minutes} reached at step {step}", flush=True)
                    save_checkpoint()
                    stopped = "max-minutes"
                    break
                if terminated.is_set() and step < stop:
                    save_checkpoint()
                    stopped = "interrupted"
                    print(f"\nterminated: checkpoint at step {step} in {out_dir}", flush=True)
                    break
        except KeyboardInterrupt:
            stopped = "interrupted"
            save_checkpoint()  # the state after the last whole step: --resume continues from it
            print(f"\ninterrupted: checkpoint at step {step} in {out_dir}", flush=True)
        finally:
            bar.close()
    if stopped is None and step < args.steps:
        stopped = "pause-at"
    return Outcome(step, elapsed, list(recent), stopped, session_images, time.perf_counter() - session_start,
                   all_sittings())
