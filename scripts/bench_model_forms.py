"""Which deployment form of a served classifier runs fastest on this CPU?

Times the model alone (prepared inputs of a 500x375 JPEG, wall ms per image) for each form:
the training form (unfused RepConvs, separate batch norms), the fused deployment form the
archives ship, that form in channels-last memory layout, TorchScript (traced and frozen), and
torch.compile (inductor), at batch 1 and 8 with 1 and 2 intra-op threads. Also checks that every
form gives the same probabilities. Usage:

    python scripts/bench_model_forms.py [--repeats 40] [--models afd_classifier,lite0_baseline]
"""

import argparse
import copy
import time

import torch

from afdserve.packaging.archive import CLASSIFIERS
from afdserve.experiments.bench import photo_jpeg
from afdserve.imaging.decode import decode_image
from afdserve.imaging.preprocess import collate, prepare
from afdserve.models.classifier import build_classifier, fuse_for_deployment
from afdserve.serving.worker_process import prepare_worker_process


def training_form(name: str) -> torch.nn.Module:
    spec = CLASSIFIERS[name]
    model = build_classifier(spec.afd_config(), pretrained=True)
    if model.afd is not None:
        model.afd.load_state_dict(torch.load(spec.afd_weights(), map_location="cpu", weights_only=True))
    return model.eval()


class Positional(torch.nn.Module):
    """forward(image, dct, quality) with every argument a tensor, for tracing."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image, dct, quality):
        return self.model(image, dct if self.model.afd is not None else None, quality)


def forms(name: str, example: tuple) -> dict:
    """Each form as a module called with (image, dct, quality)."""
    train = training_form(name)
    fused = fuse_for_deployment(copy.deepcopy(train))
    out = {"training form": Positional(train), "fused, contiguous": Positional(fused)}
    out["fused, channels-last (served)"] = Positional(copy.deepcopy(fused).to(memory_format=torch.channels_last))
    with torch.inference_mode():
        out["TorchScript (trace + freeze)"] = torch.jit.freeze(torch.jit.trace(Positional(fused).eval(), example))
    out["torch.compile (inductor)"] = torch.compile(Positional(copy.deepcopy(fused)).eval(), dynamic=False)
    return out


@torch.inference_mode()
def ms_per_image(model, batch, repeats: int) -> float:
    for _ in range(3):
        model(*batch)
    t0 = time.perf_counter()
    for _ in range(repeats):
        model(*batch)
    return 1000 * (time.perf_counter() - t0) / (repeats * batch[0].shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="afd_classifier,lite0_baseline")
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    prepare_worker_process()  # as the served workers do
    item = prepare(decode_image(photo_jpeg(500, 375)))
    print("| model | form | b1, 1 thread | b8, 1 thread | b1, 2 threads | b8, 2 threads | max prob diff |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models.split(","):
        batches = {}
        for n in (1, 8):
            c = collate([item] * n)
            batches[n] = (c["image"], c["dct"], c["quality"])
        # The channels-last form gets channels-last inputs, as a handler using it would send.
        reference = None
        for form, model in forms(name, batches[1]).items():
            cells = []
            for threads in (1, 2):
                torch.set_num_threads(threads)
                for n in (1, 8):
                    batch = batches[n]
                    if "channels-last" in form:
                        batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
                    cells.append(ms_per_image(model, batch, max(4, args.repeats // n)))
            with torch.inference_mode():
                probs = model(*batches[1]).softmax(-1)
            reference = probs if reference is None else reference
            diff = (probs - reference).abs().max().item()
            print(f"| {name} | {form} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
