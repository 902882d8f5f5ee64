"""Writing files so that a reader (or a crash) never sees half of one, and finding the command
line tools installed beside this interpreter."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` into a fresh file beside ``path``, then rename it over ``path``: readers see
    the old file or the new one, and a crash mid-write leaves no half file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def find_executable(name: str) -> str | None:
    """``name`` from this interpreter's environment first (a venv's bin need not be on PATH; its
    python is a link, so not resolved), then PATH; None when neither has it."""
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which(name)
