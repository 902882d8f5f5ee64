"""TorchServe's key file (key_file.json, written by the frontend into its working directory):
{"management": {"key", "expiration time"}, "inference": {...}, "API": {"key"}}. One reader for
the server harness and the client."""

from __future__ import annotations

import json
from pathlib import Path

KEY_FILE_NAME = "key_file.json"


class KeyFileError(ValueError):
    """key_file.json exists but holds no readable inference key."""


def read_keys(path: Path) -> dict:
    """The key file's contents; FileNotFoundError when there is none."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def inference_key(path: Path | None) -> str | None:
    """The inference key, or None when there is no file (a server without token authorization)."""
    if path is None:
        return None
    try:
        return read_keys(path)["inference"]["key"]
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as err:
        # Also what a reader sees while the frontend is rewriting the file.
        raise KeyFileError(f"{path}: no inference key ({type(err).__name__}: {err})") from err
