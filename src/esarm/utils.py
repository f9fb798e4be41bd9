"""Small helpers shared by the library (not by the model files, which ship as remote code).

Atomic writes: every output file is written to a temporary file in the same folder and then moved into place
with ``os.replace``, so readers never see a half-written file and a crash leaves the old file intact.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


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
