"""The security defaults README.md and docs/security.md promise, checked: loopback binding, token
auth, the model API off, request size limits (over HTTP too), and weights only ever loaded with
weights_only=True."""

import re
from pathlib import Path

from afdserve.ops.server import read_properties

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = read_properties(REPO_ROOT / "config.properties")


def test_config_binds_to_loopback_only():
    for key in ("inference_address", "management_address", "metrics_address"):
        assert re.match(r"^https?://127\.0\.0\.1:\d+$", CONFIG[key]), (key, CONFIG[key])


def test_token_auth_on_and_model_api_off():
    assert CONFIG.get("disable_token_authorization", "false").lower() != "true"
    assert CONFIG.get("enable_model_api", "false").lower() == "false"


def test_request_and_response_sizes_are_bounded():
    assert int(CONFIG["max_request_size"]) == 16 * 1024 * 1024
    assert int(CONFIG["max_response_size"]) == 16 * 1024 * 1024
    assert int(CONFIG["job_queue_size"]) <= 1000  # a bounded queue: 503 beyond it, not a backlog


def _code_files():
    for folder in ("afdserve", "scripts"):
        yield from (REPO_ROOT / folder).rglob("*.py")


def test_every_torch_load_is_weights_only():
    # Unpickling a checkpoint can run code: every load in the library, handlers and scripts must
    # say weights_only=True (base_handler's own loader, which does not, is never used).
    offenders = []
    for path in _code_files():
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.start():text.find(")", match.start()) + 200]
            if "weights_only=True" not in call.split("\n\n")[0]:
                line = text.count("\n", 0, match.start()) + 1
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{line}")
    assert not offenders, offenders
