"""Small helpers shared by the library (not by the model files, which ship as remote code).

Atomic writes: every output file is written to a temporary file in the same folder and then moved into place
with ``os.replace``, so readers never see a half-written file and a crash leaves the old file intact. Downloads
(:func:`fetch_verified`) are atomic writes that keep a file only when its sha256 is the pinned one. Whole folders
(a saved dataset) are written the same way: :func:`staged_folder` builds them in a hidden sibling folder and moves
it into place; staging folders that a killed process left behind are removed by the next writer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import tempfile
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import numpy as np

from .file_modes import give_new_file_mode

logger = logging.getLogger(__name__)


_TEMPORARY_MARK = ".tmp-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of :func:`atomic_write` in ``folder`` whose writing process no longer runs (a
    killed writer leaves its ``.<name>.tmp-<pid>-...`` file behind). Returns the removed files."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for candidate in folder.glob(f".*{_TEMPORARY_MARK}*"):
        pid = candidate.name.rsplit(_TEMPORARY_MARK, 1)[1].split("-", 1)[0]
        if candidate.is_file() and pid.isdigit() and not _process_alive(int(pid)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    if removed:
        logger.info("removed %d temporary files of interrupted writes in %s", len(removed), folder)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[str], object], suffix: str | None = None) -> Path:
    """Call ``write(temporary_path)`` and move the result to ``path`` with ``os.replace``.

    The temporary file lies in ``path``'s folder (created if missing) and ends with ``suffix`` (``path``'s own
    suffix by default), for writers that pick the format from the file name (``np.savez``, ``savefig``). The
    written file gets the mode of a new file, 0666 less the umask (``mkstemp`` creates 0600 files). If ``write`` raises, the temporary file is
    removed, ``path`` is left as it was and the error propagates; if the process is killed instead, the
    temporary file (named after the process) is removed by :func:`remove_stale_temporaries`. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(
            dir=path.parent,
            prefix=f".{path.name}{_TEMPORARY_MARK}{os.getpid()}-",
            suffix=path.suffix if suffix is None else suffix,
        )
    except OSError as error:  # name the user's file, not the temporary one
        raise type(error)(f"cannot write {str(path)!r}: {error.strerror or error}") from None
    os.close(fd)
    try:
        write(tmp)
        give_new_file_mode(tmp)
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


_NUMBERS = (bool, int, float)


def _members(annotation: Any) -> tuple[Any, ...]:
    """The members of a union annotation without ``None`` (the annotation itself when it is no union)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return (annotation,)


def _number_fits(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind is int else isinstance(value, (int, float))


def _numeric_kinds(annotation: Any) -> tuple[tuple[type, ...], bool] | None:
    """``(kinds, is_sequence)`` for a field of numbers / flags (``int``, ``float | None``, ``list[float]``,
    ``tuple[int, ...]``); ``None`` for any other field, whose values the class itself checks (several esarm fields
    annotated ``str`` also take a mapping, e.g. ``model_overrides``)."""
    members = _members(annotation)
    if all(member in _NUMBERS for member in members):
        return members, False
    if len(members) == 1 and typing.get_origin(members[0]) in (list, tuple):
        items = {arg for arg in typing.get_args(members[0]) if arg is not Ellipsis}
        if items and items <= set(_NUMBERS):
            return tuple(items), True
    return None


def check_field_types(cls: type, values: Mapping[str, Any], prefix: str) -> None:
    """Raise ``ValueError`` for the first of ``values`` that does not fit its numeric or boolean field of the
    dataclass ``cls`` (``"sta.max_steps must be int, got 'abc' (str)"``), before a stage fails on it deep inside
    training. ``None`` fits a field that allows it; ints fit float fields; yaml's lists fit tuple fields. Keys that
    are not fields of ``cls``, and fields of other types, are left to the caller and the class."""
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        kinds = _numeric_kinds(hints[name]) if name in hints else None
        if kinds is None or (value is None and type(None) in typing.get_args(hints[name])):
            continue
        kinds, sequence = kinds
        items = value if sequence and isinstance(value, (list, tuple)) else None
        fits = all(any(_number_fits(v, k) for k in kinds) for v in items) if items is not None else (
            not sequence and any(_number_fits(value, k) for k in kinds)
        )  # fmt: skip
        if not fits:
            expected = " | ".join(k.__name__ for k in kinds)
            expected = f"a list of {expected}" if sequence else expected
            hint = ""
            if isinstance(value, str) and float in kinds:
                try:
                    hint = f" (yaml reads {value} as text: write it with a dot, {float(value):.1e})"
                except ValueError:
                    pass
            raise ValueError(f"{prefix}.{name} must be {expected}, got {value!r} ({type(value).__name__}){hint}")


def atomic_write_json(path: str | os.PathLike, obj: Any, sort_keys: bool = True) -> Path:
    """Write ``obj`` as indented JSON (see :func:`to_jsonable`) to ``path`` atomically. Returns ``path``."""
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=sort_keys) + "\n")


def check_writable_folder(path: str | os.PathLike, argument: str = "output_dir") -> Path:
    """Create ``path`` (and its parents) if needed and check that files can be written in it, by writing and
    removing a small file there. Raises ``OSError`` naming ``argument`` and the user's path (not the probe's)."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".esarm-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OSError(f"{argument} must be a folder esarm can write in, got {str(path)!r} ({reason})") from None
    return path


_STAGING_MARK = ".staging-"


def remove_stale_staging(output_dir: str | os.PathLike) -> list[Path]:
    """Delete the staging folders of ``output_dir`` (``.<name>.staging-<pid>-<random>`` beside it) whose writing
    process no longer runs: what a killed :func:`staged_folder` left behind. Returns the removed folders."""
    output_dir = Path(output_dir)
    if not output_dir.parent.is_dir():
        return []
    removed = []
    for candidate in output_dir.parent.glob(f".{output_dir.name}{_STAGING_MARK}*"):
        pid = candidate.name[len(f".{output_dir.name}{_STAGING_MARK}") :].split("-", 1)[0]
        if candidate.is_dir() and pid.isdigit() and not _process_alive(int(pid)):
            logger.info("removing %s, left behind by an interrupted write of %s", candidate, output_dir)
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


@contextmanager
def staged_folder(output_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``output_dir`` to write into; when the block ends without an error,
    ``output_dir`` is replaced by it (the old one, if any, is moved aside and then deleted). On an error the
    staging folder is deleted and ``output_dir`` is left as it was.

    The staging folder is created with ``os.mkdir``'s mode (0777 less the umask: usually 0755, where
    ``tempfile.mkdtemp`` would give 0700) and named after the writing process, so that the next writer removes
    it if this process is killed (:func:`remove_stale_staging`).
    """
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output_dir)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    staging = output_dir.parent / f".{output_dir.name}{_STAGING_MARK}{tag}"
    os.mkdir(staging)
    try:
        yield staging
        if output_dir.exists():
            old = output_dir.parent / f".{output_dir.name}{_STAGING_MARK}{tag}-old"
            os.replace(output_dir, old)
            os.replace(staging, output_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_safetensors(path: str | os.PathLike) -> Path:
    """Check that a ``.safetensors`` file is whole: its header parses and the file is as long as the header says
    (a truncated or corrupted download fails here instead of deep inside ``from_pretrained``). Reads only the
    header. Raises ``ValueError`` naming the file and what is wrong."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        header_size = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < header_size <= size - 8:
            raise ValueError(
                f"weights file {str(path)!r} must be a safetensors file, got {size} bytes without a valid header"
            )
        try:
            header = json.loads(handle.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(
                f"weights file {str(path)!r} must be a safetensors file, got an unreadable header"
            ) from None
    if not isinstance(header, dict):
        raise ValueError(f"weights file {str(path)!r} must be a safetensors file, got a header that is not a mapping")
    ends = [
        entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__" and isinstance(entry, dict)
    ]
    expected = 8 + header_size + max(ends, default=0)
    if size != expected:
        raise ValueError(
            f"weights file {str(path)!r} must hold {expected} bytes as its header says, got {size} (truncated or corrupted)"
        )
    return path
