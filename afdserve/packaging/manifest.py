"""Archive manifests and the model store's versions.

Every archive ``NAME.VERSION.mar`` has a manifest ``NAME.VERSION.manifest.json`` beside it: model,
version, the sha256 of the archive and of each weights file inside it, a classifier's backbone
spec, the training record of the weights, their measured accuracy when there is one, the build
time and the library version. The server refuses an archive whose bytes no longer match its manifest (or that has none), so what is
served is what was built and recorded.

The store also holds ``serving.json``: which version of each model is the default and which
versions are retired. ``afdserve promote`` / ``retire`` write it, ``afdserve serve`` reads it, so a
restart serves the same versions with the same defaults.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import zipfile
from pathlib import Path

import afdserve
from afdserve.util.files import atomic_write_text

MANIFEST_SUFFIX = ".manifest.json"
SERVING_STATE = "serving.json"
# TorchServe model names and versions; no path separators or dots in names, so
# "NAME.VERSION.mar" splits at the first dot.
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]*$")


class ArchiveVerificationError(RuntimeError):
    """An archive is missing its manifest or does not match it."""


def archive_file_name(model: str, version: str) -> str:
    if not NAME_RE.match(model):
        raise ValueError(f"bad model name {model!r}: letters, digits, '_' and '-', starting with a letter")
    if not VERSION_RE.match(version):
        raise ValueError(f"bad version {version!r}: letters, digits, '.', '_' and '-'")
    return f"{model}.{version}.mar"


def manifest_path(archive: Path) -> Path:
    archive = Path(archive)
    return archive.with_name(archive.name[: -len(".mar")] + MANIFEST_SUFFIX)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_digests(archive: Path) -> dict[str, str]:
    """sha256 of every weights file (``*.pt``/``*.pth``) inside the archive."""
    digests = {}
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            if info.filename.endswith((".pt", ".pth")):
                digest = hashlib.sha256()
                with z.open(info) as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        digest.update(chunk)
                digests[info.filename] = digest.hexdigest()
    return digests


def write_manifest(archive: Path, model: str, version: str, record: dict | None = None,
                   accuracy=None, description: str = "", backbone: dict | None = None,
                   library_sha256: str | None = None) -> dict:
    """``backbone``: a classifier's backbone spec (models.backbones.BackboneSpec.to_dict), with
    the sha256 of a user's checkpoint it was built from; ``library_sha256``: the digest of the
    afdserve code inside the archive (packaging.archive.library_digest)."""
    archive = Path(archive)
    manifest = {
        "model": model,
        "version": version,
        "archive": archive.name,
        "archive_sha256": sha256_file(archive),
        "weights_sha256": weights_digests(archive),
        "description": description,
        **({"backbone": backbone} if backbone is not None else {}),
        "record": record,
        "accuracy": accuracy,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "library_version": afdserve.__version__,
        **({"library_sha256": library_sha256} if library_sha256 is not None else {}),
    }
    atomic_write_text(manifest_path(archive), json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(archive: Path) -> dict:
    path = manifest_path(archive)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArchiveVerificationError(
            f"{archive} has no manifest ({path.name}); build it with `afdserve build`") from None
    except ValueError as err:
        raise ArchiveVerificationError(f"unreadable manifest {path}: {err}") from None


def verify_archive(archive: Path) -> dict:
    """The archive's manifest, after checking the archive's sha256 against it."""
    archive = Path(archive)
    manifest = read_manifest(archive)
    actual = sha256_file(archive)
    if actual != manifest.get("archive_sha256"):
        raise ArchiveVerificationError(
            f"{archive.name} does not match its manifest (sha256 {actual[:12]}..., manifest says "
            f"{str(manifest.get('archive_sha256'))[:12]}...): refusing to serve a modified archive")
    return manifest


# ----------------------------------------------------------------------------- the store


def version_key(version: str):
    """Numeric order for dotted versions (2.10 after 2.9); non-numeric parts sort as text."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-_]", version)]


def store_versions(model_store: Path, model: str) -> list[str]:
    """Versions of ``model`` with an archive in the store, oldest first."""
    prefix = f"{model}."
    found = [p.name[len(prefix):-len(".mar")] for p in Path(model_store).glob(f"{model}.*.mar")]
    return sorted(found, key=version_key)


def read_serving_state(model_store: Path) -> dict:
    path = Path(model_store) / SERVING_STATE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        state = {}
    return {"defaults": dict(state.get("defaults", {})), "retired": dict(state.get("retired", {}))}


def write_serving_state(model_store: Path, state: dict) -> None:
    atomic_write_text(Path(model_store) / SERVING_STATE, json.dumps(state, indent=2, sort_keys=True) + "\n")


def record_default(model_store: Path, model: str, version: str) -> None:
    state = read_serving_state(model_store)
    state["defaults"][model] = version
    retired = state["retired"].get(model, [])
    if version in retired:  # promoting a retired version brings it back
        retired.remove(version)
    write_serving_state(model_store, state)


def record_retired(model_store: Path, model: str, version: str) -> None:
    state = read_serving_state(model_store)
    retired = state["retired"].setdefault(model, [])
    if version not in retired:
        retired.append(version)
    write_serving_state(model_store, state)


def served_archives(model_store: Path, model: str) -> list[str]:
    """The archive files to load for ``model``, default version first (TorchServe makes the first
    version registered the default): the recorded default if there is one, else the newest.
    Retired versions are left out."""
    state = read_serving_state(model_store)
    retired = set(state["retired"].get(model, []))
    versions = [v for v in store_versions(model_store, model) if v not in retired]
    if not versions:
        return []
    default = state["defaults"].get(model)
    if default not in versions:
        default = versions[-1]
    ordered = [default] + [v for v in reversed(versions) if v != default]
    return [archive_file_name(model, v) for v in ordered]
