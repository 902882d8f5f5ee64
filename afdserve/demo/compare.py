"""What the demo page does, without gradio: compress a photo at a JPEG quality with the encoder the
project evaluates with (afdserve.data.jpeg), send the file to the baseline and the AFD classifier
(and on request to the restorer) through TorchServe's inference API, and put the answers, the
quality the server read and the latencies measured here into words and numbers for the page.

    comparer = Comparer(TorchServeClient(url, key_file="key_file.json"))
    result = comparer.compare(Image.open("cat.png"), quality=10)
    result.problem or result.answers[1].top5
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from afdserve.data.jpeg import jpeg_roundtrip
from afdserve.imaging.decode import decode_image
from afdserve.ops.client import Outcome, Target, TorchServeClient

BASELINE = "lite0_baseline"
AFD = "afd_classifier"
RESTORER = "swinir_restorer"
# Uploads are shrunk to this longer side first: phone photos would make the restorer take minutes
# on a CPU, and the classifiers see 224 px anyway (ImageNet photos are about 500 px).
MAX_SIDE = 1024
SAMPLES_DIR = Path(__file__).with_name("samples")


# The page opens on it: at quality 10 the baseline's top-1 is "candle", AFD's "missile".
FIRST_SAMPLE = "rocket.jpg"


def samples() -> list[Path]:
    """The bundled sample photos (see samples/README.md), FIRST_SAMPLE first."""
    found = [p for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    return sorted(found, key=lambda p: (p.name != FIRST_SAMPLE, p.name))


@dataclass
class ModelAnswer:
    """One classifier's answer as the page shows it. ``top5``: display label -> probability, most
    probable first; empty when the call failed (``error`` says why)."""

    target: Target
    version: str | None = None
    top5: dict[str, float] = field(default_factory=dict)
    jpeg_quality: int | None = None  # what the server estimated from the file it received
    latency_s: float | None = None
    error: str | None = None

    @property
    def title(self) -> str:
        name = self.target.model if self.version is None else f"{self.target.model} {self.version}"
        if self.latency_s is None:
            return name
        return f"{name} · {self.latency_s * 1000:.0f} ms"


@dataclass
class Comparison:
    """The compressed file, what it looks like after decoding, and each classifier's answer.
    ``problem``: why nothing could be asked at all (no server, key refused), for the page's banner."""

    quality: int
    jpeg: bytes
    compressed: np.ndarray
    original_size: tuple[int, int]  # (width, height) before any shrinking
    answers: list[ModelAnswer]
    problem: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.compressed.shape[1], self.compressed.shape[0]

    @property
    def server_quality(self) -> int | None:
        """The JPEG quality the server estimated from the file's quantization tables (the AFD
        classifier's reading when it answered: it is the model that uses it)."""
        for answer in sorted(self.answers, key=lambda a: a.target.model != AFD):
            if answer.jpeg_quality is not None:
                return answer.jpeg_quality
        return None


@dataclass
class Restoration:
    image: np.ndarray | None
    latency_s: float | None
    error: str | None = None


def _top5(body: dict) -> dict[str, float]:
    entries = body["top_k"][:5]
    names = [e["label"].replace("_", " ") for e in entries]
    top = {}
    for name, entry in zip(names, entries):
        # ImageNet has a few names twice (crane the bird and the machine): keep both apart.
        if names.count(name) > 1:
            name = f"{name} ({entry['synset']})"
        top[name] = float(entry["probability"])
    return top


def _server_message(outcome: Outcome) -> str:
    """The error text TorchServe or the handler sent, without the JSON around it."""
    body = outcome.json if isinstance(outcome.json, dict) else {}
    return str(body.get("error") or body.get("message") or outcome.error or "").strip()


class Comparer:
    """The page's work, against one TorchServe. ``classifiers``: the control first, then AFD."""

    def __init__(self, client: TorchServeClient, classifiers=(BASELINE, AFD), restorer=RESTORER,
                 max_side: int = MAX_SIDE):
        self.client = client
        self.classifiers = [c if isinstance(c, Target) else Target.parse(c) for c in classifiers]
        self.restorer = restorer if isinstance(restorer, Target) else Target.parse(restorer)
        self.max_side = max_side

    @property
    def url(self) -> str:
        return self.client.base_url

    # -- words for the page --------------------------------------------------------------------

    def problem(self, outcome: Outcome) -> str | None:
        """Why no model can answer at all (so asking the others is pointless), or None."""
        key_file = self.client.key_file
        if outcome.key_refused:
            if key_file is None or not key_file.exists():
                return (f"TorchServe at {self.url} asks for an inference key, and there is no "
                        f"`{key_file}`. Start the demo in the directory the server was started from "
                        "(`make serve` writes key_file.json there), or pass `--key-file PATH`.")
            return (f"TorchServe at {self.url} refused the inference key in `{key_file}`. Start the "
                    "demo in the directory the server was started from, or pass `--key-file PATH`; "
                    "keys expire after an hour, and `afdserve serve` run again renews them "
                    "(the demo reads the file again by itself).")
        if outcome.status != 0:
            return None
        error = outcome.error or ""
        if error.startswith("KeyFileError"):
            return f"`{key_file}` holds no readable inference key: {error.split(': ', 1)[-1]}"
        if "Timeout" in error:
            return (f"TorchServe at {self.url} did not answer within {self.client.timeout:g} s "
                    "(still starting, or busy).")
        return (f"No TorchServe is answering at {self.url}. Start it with `make serve` (or "
                "`afdserve serve`) in the project directory, then press **Run again**.")

    def model_error(self, outcome: Outcome) -> str:
        """Why this one model did not answer (the server itself works)."""
        if outcome.status == 404:
            return (f"`{outcome.target}` is not served at {self.url}: `afdserve serve --models ...` "
                    "serves it (and `afdserve models` lists what is).")
        return f"`{outcome.target}` answered HTTP {outcome.status}: {_server_message(outcome)}"

    # -- the work ------------------------------------------------------------------------------

    def prepare(self, photo: Image.Image | np.ndarray | str | Path) -> tuple[np.ndarray, tuple[int, int]]:
        """The photo as an RGB array, shrunk to ``max_side``, and its size before that."""
        if isinstance(photo, (str, Path)):
            with Image.open(photo) as im:
                photo = ImageOps.exif_transpose(im).convert("RGB")
        elif isinstance(photo, np.ndarray):
            photo = Image.fromarray(photo)
        photo = photo.convert("RGB")
        original = photo.size
        if max(original) > self.max_side:
            photo = photo.copy()
            photo.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
        return np.asarray(photo), original

    def compare(self, photo, quality: int) -> Comparison:
        """Compress ``photo`` at ``quality`` and ask each classifier in turn (one at a time, so
        each latency is that model's alone)."""
        pixels, original = self.prepare(photo)
        quality = int(quality)
        jpeg, compressed = jpeg_roundtrip(pixels, quality)
        comparison = Comparison(quality, jpeg, compressed, original, [])
        for target in self.classifiers:
            outcome = self.client.predict(target, jpeg)
            problem = self.problem(outcome)
            if problem is not None:
                comparison.problem = problem
                comparison.answers = [ModelAnswer(t, error=problem) for t in self.classifiers]
                return comparison
            answer = ModelAnswer(target, latency_s=outcome.latency_s)
            if outcome.ok:
                try:
                    answer.top5 = _top5(outcome.json)
                    answer.version = outcome.json.get("version")
                    answer.jpeg_quality = outcome.json.get("jpeg_quality")
                except (TypeError, KeyError, AttributeError) as err:
                    answer.error = f"`{target}` answered without a top-5 list ({type(err).__name__}: {err})"
            else:
                answer.error = self.model_error(outcome)
            comparison.answers.append(answer)
        return comparison

    def restore(self, jpeg: bytes) -> Restoration:
        """The restorer's output for the compressed file, decoded to RGB."""
        outcome = self.client.restore(self.restorer, jpeg)
        if not outcome.ok or outcome.content is None:
            problem = self.problem(outcome)
            return Restoration(None, outcome.latency_s, problem or self.model_error(outcome))
        restored = np.asarray(decode_image(outcome.content).image)
        return Restoration(restored, outcome.latency_s)


def jpeg_size_text(jpeg: bytes) -> str:
    kib = len(jpeg) / 1024
    return f"{kib:.1f} KiB" if kib < 1000 else f"{kib / 1024:.2f} MiB"

