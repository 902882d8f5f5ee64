"""Python client for served classifiers, with sticky live traffic splitting between two versions.

  TorchServeClient  PUT {base_url}/predictions/{model}/{version} with the image bytes and the
                    inference key from TorchServe's key_file.json; re-reads the key once when
                    the server says the token failed (keys rotate), never raises for HTTP errors.
                    ``predict`` for classifiers (JSON answers), ``restore`` for the restorer
                    (image answers).
  TrafficSplit      deterministic assignment of a caller's key (user id, image id, ...) to
                    version A or B, the same across processes and restarts; optional shadowing of
                    A's traffic to B.
  SplitClient       sends each request to its assigned version, shadows copies to B in a small
                    thread pool, and keeps per-version counts, latencies and A/B top-1 agreement.

    client = TorchServeClient("http://127.0.0.1:8080", key_file="key_file.json")
    split = TrafficSplit(Target.parse("afd_classifier/1.0"), Target.parse("afd_classifier/2.0"),
                         b_share=0.1, shadow_share=0.2, salt="rollout-2")
    with SplitClient(client, split) as ab:
        outcome = ab.predict(jpeg_bytes, key=user_id)
    ab.stats()
"""

from __future__ import annotations

import collections
import hashlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from afdserve.ops.keys import KEY_FILE_NAME, KeyFileError, inference_key
from afdserve.ops.latency import latency_summary

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_KEY_FILE = KEY_FILE_NAME
ERROR_TEXT_LIMIT = 500  # error bodies are kept for diagnosis, not whole HTML pages
LATENCY_WINDOW = 100_000  # latency percentiles cover the most recent requests per version
IMAGE_CONTENT_TYPE = "application/octet-stream"  # any image type; the server reads the bytes


@dataclass(frozen=True)
class Target:
    """One served model version; ``version=None`` means the server's default version."""

    model: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        """``"afd_classifier/2.0"`` -> Target("afd_classifier", "2.0"); ``"afd_classifier"`` -> default."""
        model, _, version = text.strip().strip("/").partition("/")
        if not model or "/" in version:
            raise ValueError(f"expected 'model' or 'model/version', got {text!r}")
        return cls(model, version or None)

    @property
    def path(self) -> str:
        """The inference API path, without the leading slash."""
        if self.version is None:
            return f"predictions/{self.model}"
        return f"predictions/{self.model}/{self.version}"

    def __str__(self) -> str:
        return self.model if self.version is None else f"{self.model}/{self.version}"


@dataclass
class Outcome:
    """What one prediction call came to. ``status`` 0: no HTTP answer (see ``TorchServeClient.predict``)."""

    target: Target
    status: int
    json: Any | None
    latency_s: float
    error: str | None = None
    shadow: bool = False  # a copy sent to B for comparison; never handed back to the caller
    content: bytes | None = None  # the answer's image file (``TorchServeClient.restore`` only)

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def key_refused(self) -> bool:
        """TorchServe refused the inference key (wrong, expired or none sent)."""
        return _says_token_failed(self.status, self.error or "")

    @property
    def top1(self) -> int | None:
        """The top-1 class index of a classifier answer, if there is one."""
        try:
            return int(self.json["top_k"][0]["index"])
        except (TypeError, KeyError, IndexError, ValueError):
            return None


def _says_token_failed(status: int, text: str) -> bool:
    # TorchServe answers a missing/expired/wrong key with 400 (not 401) and
    # {"type": "InvalidKeyException", "message": "Token Authorization failed. ..."}.
    if status != 400:
        return False
    text = text.lower()
    return "token" in text or "unauthorized" in text


def _token_failure(response: requests.Response) -> bool:
    return _says_token_failed(response.status_code, response.text)


class TorchServeClient:
    """Inference calls against one TorchServe, authenticated with its inference key.

    The key is read from ``key_file`` (TorchServe's key_file.json) on first use. A missing file
    means no Authorization header, for servers run with token authorization disabled. When the
    server rejects the token, the file is read again once and the call retried once: the
    frontend rewrites the file when keys are rotated.
    """

    def __init__(self, base_url: str = DEFAULT_BASE_URL, key_file: str | Path | None = DEFAULT_KEY_FILE,
                 timeout: float = 30, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.key_file = Path(key_file) if key_file is not None else None
        self.timeout = timeout
        self.session = session if session is not None else requests.Session()
        self._owns_session = session is None
        self._key: str | None = None
        self._key_loaded = False
        self._key_lock = threading.Lock()

    # -- keys ----------------------------------------------------------------------------------

    def reload_key(self) -> str | None:
        """Read the inference key from the key file now; None when there is no file."""
        key = inference_key(self.key_file)
        with self._key_lock:
            self._key, self._key_loaded = key, True
        return key

    def _auth_headers(self) -> dict[str, str]:
        with self._key_lock:
            loaded, key = self._key_loaded, self._key
        if not loaded:
            key = self.reload_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    # -- calls ---------------------------------------------------------------------------------

    def url(self, target: Target) -> str:
        return f"{self.base_url}/{target.path}"

    def _put(self, target: Target, image_bytes: bytes, headers: dict | None) -> requests.Response:
        headers = dict(headers or {})
        if not any(k.lower() == "content-type" for k in headers):
            # Explicit, so no layer in between picks a form type, which TorchServe would URL-decode.
            headers["Content-Type"] = IMAGE_CONTENT_TYPE
        return self.session.put(self.url(target), data=image_bytes, timeout=self.timeout,
                                headers={**headers, **self._auth_headers()})

    def predict(self, target: Target, image_bytes: bytes, headers: dict | None = None) -> Outcome:
        """Classify one image with ``target``; never raises for a failed call. HTTP errors come
        back as the Outcome's status and error text, no HTTP answer at all (failed connection,
        timeout, unreadable key file) as status 0. ``latency_s`` covers the whole call, a key
        re-read and retry included, as the caller waits for both."""
        return self._call(target, image_bytes, headers, image_answer=False)

    def restore(self, target: Target, image_bytes: bytes, headers: dict | None = None) -> Outcome:
        """Restore one image with a restorer ``target``, like ``predict`` otherwise: the restored
        file (PNG, or JPEG with ``{"X-Output-Format": "jpeg"}``) is the Outcome's ``content``;
        ``json`` stays None unless an error came back as JSON."""
        return self._call(target, image_bytes, headers, image_answer=True)

    def _call(self, target: Target, image_bytes: bytes, headers: dict | None, image_answer: bool) -> Outcome:
        start = time.perf_counter()
        try:
            response = self._put(target, image_bytes, headers)
            if _token_failure(response):
                self.reload_key()
                response = self._put(target, image_bytes, headers)
        except (requests.RequestException, OSError, KeyFileError) as err:
            return Outcome(target, 0, None, time.perf_counter() - start, f"{type(err).__name__}: {err}")
        latency = time.perf_counter() - start
        if image_answer and response.status_code == 200:
            if not response.headers.get("content-type", "").startswith("image/"):
                return Outcome(target, 200, None, latency, "answer is not an image")
            return Outcome(target, 200, None, latency, content=response.content)
        try:
            body = response.json()
        except ValueError:
            body = None
        error = None
        if response.status_code != 200:
            error = response.text[:ERROR_TEXT_LIMIT]
        elif body is None:
            error = "answer is not JSON"
        return Outcome(target, response.status_code, body, latency, error)

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> TorchServeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _unit_interval(text: str) -> float:
    """sha256 of ``text`` mapped to [0, 1): the first 8 bytes as an integer over 2**64.

    Not Python's hash(), which is salted per process: the same key must reach the same version
    in every worker and after every restart.
    """
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class TrafficSplit:
    """Sticky assignment of request keys to version A or B.

    A key goes to B when sha256(salt + key), mapped to [0, 1), is below ``b_share``; changing the
    salt reshuffles which keys see B. Of the keys assigned to A, a share ``shadow_share`` also
    has a copy sent to B, decided by a second hash with a different salt suffix, so shadowing is
    independent of the split.
    """

    SHADOW_SUFFIX = "\x00shadow"

    def __init__(self, a: Target, b: Target, b_share: float, shadow_share: float = 0.0, salt: str = ""):
        for name, share in (("b_share", b_share), ("shadow_share", shadow_share)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {share}")
        self.a, self.b = a, b
        self.b_share, self.shadow_share = b_share, shadow_share
        self.salt = salt

    def assign(self, key: str) -> Target:
        return self.b if _unit_interval(self.salt + key) < self.b_share else self.a

    def shadow(self, key: str) -> bool:
        """Whether a copy of this key's request also goes to B (only for keys assigned to A)."""
        if self.shadow_share <= 0.0 or self.assign(key) == self.b:
            return False
        return _unit_interval(self.salt + self.SHADOW_SUFFIX + key) < self.shadow_share

    def __repr__(self) -> str:
        return (f"TrafficSplit(a={self.a}, b={self.b}, b_share={self.b_share}, "
                f"shadow_share={self.shadow_share}, salt={self.salt!r})")


class _Tally:
    """Counts and recent latencies of one stream of outcomes (callers hold the lock)."""

    def __init__(self):
        self.requests = 0
        self.errors = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)

    def add(self, outcome: Outcome) -> None:
        self.requests += 1
        self.errors += not outcome.ok
        self.latencies.append(outcome.latency_s)

    def summary(self) -> dict:
        return {"requests": self.requests, "errors": self.errors,
                "latency_ms": latency_summary(list(self.latencies))}


class SplitClient:
    """Live traffic split over one TorchServeClient.

    ``predict`` answers with the assigned version's outcome only. Shadow copies to B run in a
    small thread pool after A has answered, so they add no latency to the caller; when
    ``max_pending_shadows`` copies are already waiting, further copies are dropped (and counted)
    rather than queued without bound. ``stats`` reports live traffic per version, shadow traffic
    separately, and how often B's top-1 matched A's on shadowed requests.
    """

    def __init__(self, client: TorchServeClient, split: TrafficSplit, shadow_workers: int = 2,
                 max_pending_shadows: int = 64, keep_shadow_outcomes: int = 1000):
        self.client = client
        self.split = split
        self._lock = threading.Lock()
        self._live: dict[Target, _Tally] = {split.a: _Tally(), split.b: _Tally()}
        self._shadow = _Tally()
        self._pairs = 0  # shadowed requests where A and B both answered with a top-1
        self._agreeing = 0
        self._dropped = 0
        self.shadow_outcomes: collections.deque[Outcome] = collections.deque(maxlen=keep_shadow_outcomes)
        self._pool = ThreadPoolExecutor(max_workers=shadow_workers, thread_name_prefix="afdserve-shadow")
        self._pending: set[Future] = set()
        self._max_pending = max_pending_shadows

    def predict(self, image_bytes: bytes, key: str, headers: dict | None = None) -> Outcome:
        target = self.split.assign(key)
        outcome = self.client.predict(target, image_bytes, headers)
        with self._lock:
            self._live.setdefault(target, _Tally()).add(outcome)
        if target == self.split.a and self.split.shadow(key):
            self._submit_shadow(image_bytes, headers, outcome)
        return outcome

    def _submit_shadow(self, image_bytes: bytes, headers: dict | None, live: Outcome) -> None:
        with self._lock:
            if len(self._pending) >= self._max_pending:
                self._dropped += 1
                return
            future = self._pool.submit(self._run_shadow, image_bytes, headers, live)
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def _run_shadow(self, image_bytes: bytes, headers: dict | None, live: Outcome) -> None:
        shadow = self.client.predict(self.split.b, image_bytes, headers)
        shadow.shadow = True
        a_top1, b_top1 = live.top1, shadow.top1
        with self._lock:
            self._shadow.add(shadow)
            self.shadow_outcomes.append(shadow)
            if live.ok and shadow.ok and a_top1 is not None and b_top1 is not None:
                self._pairs += 1
                self._agreeing += a_top1 == b_top1

    def wait_for_shadows(self, timeout: float | None = None) -> bool:
        """Block until the shadow copies sent so far are done; False if ``timeout`` ran out."""
        with self._lock:
            pending = list(self._pending)
        _, not_done = wait_futures(pending, timeout=timeout)
        return not not_done

    def stats(self) -> dict:
        """{"live": {"model/version": {requests, errors, latency_ms}}, "shadow": {target,
        requests, errors, latency_ms, pairs, agreement, dropped}}; agreement is None before any
        pair. Shadow copies still in flight are not counted yet."""
        with self._lock:
            return {
                "split": {"a": str(self.split.a), "b": str(self.split.b), "b_share": self.split.b_share,
                          "shadow_share": self.split.shadow_share},
                "live": {str(target): tally.summary() for target, tally in self._live.items()},
                "shadow": {
                    "target": str(self.split.b),
                    **self._shadow.summary(),
                    "pairs": self._pairs,
                    "agreement": self._agreeing / self._pairs if self._pairs else None,
                    "dropped": self._dropped,
                },
            }

    def close(self, wait: bool = True) -> None:
        """Stop the shadow pool (after the pending copies when ``wait``); the client stays open."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def __enter__(self) -> SplitClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
