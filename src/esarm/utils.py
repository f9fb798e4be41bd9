"""Small helpers shared by the library (not by the model files, which ship as remote code).

Atomic writes: every output file is written to a temporary file in the same folder and then moved into place
with ``os.replace``, so readers never see a half-written file and a crash leaves the old file intact. Downloads
(:func:`fetch_verified`) are atomic writes that keep a file only when its sha256 is the pinned one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], suffix: str | None = None) -> Path:
    """Call ``write(temporary_path)`` and move the result to ``path`` with ``os.replace``.

    The temporary file lies in ``path``'s folder (created if missing) and ends with ``suffix`` (``path``'s own
    suffix by default), for writers that pick the format from the file name (``np.savez``, ``savefig``). The
    written file gets mode 0644 (``mkstemp`` creates 0600 files). If ``write`` raises, the temporary file is
    removed, ``path`` is left as it was and the error propagates. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix
    )
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`). Returns ``path``."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`). Returns ``path``."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding=encoding))


def file_sha256(path: str | os.PathLike) -> str | None:
    """Hex sha256 of a file, or ``None`` when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_verified(url: str, destination: str | os.PathLike, sha256: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination`` atomically, keeping it only if its sha256 is ``sha256``.

    Raises:
        OSError: the download failed (``urllib.error.URLError`` is an ``OSError``) or the checksum differs; then
            ``destination`` is left as it was.
    """

    def fetch(tmp: str) -> None:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out, urlopen(url, timeout=timeout) as response:  # noqa: S310 (pinned https URLs)
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise OSError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest.hexdigest()}")

    return atomic_write(destination, fetch)


def to_jsonable(value: Any) -> Any:
    """``value`` with what ``json`` cannot write converted: mappings (keys as text), tuples, numpy arrays and
    scalars, 0-d torch tensors, paths; NaN and infinities become ``None`` (JSON has no such numbers)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic) or (hasattr(value, "item") and getattr(value, "ndim", None) == 0):
        value = value.item()  # numpy scalar or 0-d torch tensor
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_json(path: str | os.PathLike, obj: Any, sort_keys: bool = True) -> Path:
    """Write ``obj`` as indented JSON (see :func:`to_jsonable`) to ``path`` atomically. Returns ``path``."""
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=sort_keys) + "\n")
