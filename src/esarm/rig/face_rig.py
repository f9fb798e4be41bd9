"""A face rig: neutral mesh + one vertex-delta target per ARKit blendshape, in millimetres, with vertex regions,
and the one resolver that picks the rig a user gets.

Evaluation turns 52 ARKit coefficients into mesh vertices (``vertices = neutral + Σ weight · delta``) so that
vertex metrics (LVE on the ``"lips"`` region, EVE on the ``"eye_forehead"`` region) can be computed in millimetres;
the renderer and the glTF writer draw the same mesh.

The npz format (``FaceRig.from_npz`` / ``save_npz``): ``names`` [52] (any order; alphabetical is usual),
``neutral`` [V, 3] float32 mm, ``deltas`` [52, V, 3] mm (float32, float16, or int16 with ``deltas_scale`` [52], mm
per step), ``faces`` [F, 3], ``lips`` and ``eye_forehead`` vertex ids, optional ``landmarks`` (68 iBUG vertex ids),
``region_<name>`` extra regions, ``units`` ("mm", "cm" or "m") and ``source``.

Which rig (:func:`resolve_rig`, :meth:`FaceRig.default`): an explicit path, else ``$ESARM_RIG``, else a full
ICT-FaceKit conversion in the user cache (``esarm.rig download`` makes one), else the rig embedded in the package:
ICT-FaceKit's face area converted by :mod:`esarm.rig.ict_facekit` and stored with int16 deltas (1.4 MB; deltas
within 0.0006 mm of the full-precision conversion, LVE / EVE within 1e-5 relative, see ``docs/evaluation.md``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..blendshapes import ARKIT_NAMES, ARKIT_NAMES_ALPHABETICAL, BLENDSHAPE_INDEX, NUM_BLENDSHAPES
from ..utils import atomic_write
from .gltf import normalise_target_name, read_gltf_rig, units_scale
from .ict_facekit import (
    ICT_FACEKIT_COMMIT,
    ICT_RIG_FILENAME,
    convert_ict_facekit,
    download_ict_facekit,
)
from .regions import REGION_NAMES

logger = logging.getLogger(__name__)

EMBEDDED_RIG = Path(__file__).resolve().parent / "assets" / "ict_facekit_arkit52.npz"
"""The rig shipped in the package: ICT-FaceKit's face area (MIT licence, ``assets/LICENSE-ICT-FaceKit.txt``)."""

RIG_ENV = "ESARM_RIG"

# Plausible size of a face, in millimetres: the largest side of the neutral mesh's bounding box.
_FACE_EXTENT_MM = (60.0, 600.0)


def default_cache_dir() -> Path:
    """Folder for converted rigs: ``$ESARM_HOME/rigs`` (like ``HF_HOME``), else ``$XDG_CACHE_HOME/esarm/rigs``,
    else ``~/.cache/esarm/rigs``."""
    if os.environ.get("ESARM_HOME"):
        return Path(os.environ["ESARM_HOME"]).expanduser() / "rigs"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "esarm" / "rigs"


@dataclass
class FaceRig:
    """Neutral mesh + 52 ARKit vertex deltas (millimetres) + named vertex regions.

    Attributes:
        neutral: ``[V, 3]`` float32, neutral-face vertex positions in mm.
        deltas: ``[52, V, 3]`` float32, vertex offset at weight 1.0 of each ARKit blendshape, in
            ``esarm.blendshapes.ARKIT_NAMES`` order, in mm.
        faces: ``[F, 3]`` int64 triangles (may be empty for a point-only rig).
        regions: ``{"lips": ids, "eye_forehead": ids}`` (int64 vertex ids, sorted, unique); more regions allowed.
        landmarks: ``[68]`` int64 iBUG landmark vertex ids, or ``None``.
        source: free-text provenance.
    """

    neutral: np.ndarray
    deltas: np.ndarray
    faces: np.ndarray
    regions: dict[str, np.ndarray]
    landmarks: np.ndarray | None = None
    source: str = ""
    _torch_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.neutral = np.asarray(self.neutral, dtype=np.float32)
        self.deltas = np.asarray(self.deltas, dtype=np.float32)
        self.faces = np.asarray(self.faces, dtype=np.int64).reshape(-1, 3)
        self.regions = {
            name: np.asarray(ids).astype(np.int64, copy=False).reshape(-1) for name, ids in self.regions.items()
        }
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks).astype(np.int64, copy=False).reshape(-1)
        self.validate()

    # ---- validation ----
    def validate(self) -> None:
        """Check shapes, finiteness, units (mm) and region ids; raise ``ValueError`` naming what is wrong."""
        if self.neutral.ndim != 2 or self.neutral.shape[1] != 3 or self.neutral.shape[0] == 0:
            raise ValueError(f"neutral must have shape [vertices, 3], got shape {self.neutral.shape}")
        num_vertices = self.neutral.shape[0]
        if self.deltas.shape != (NUM_BLENDSHAPES, num_vertices, 3):
            raise ValueError(
                f"deltas must have shape [52, {num_vertices}, 3] (one target per ARKit name, vertices as neutral), "
                f"got shape {self.deltas.shape}"
            )
        for name, array in (("neutral", self.neutral), ("deltas", self.deltas)):
            bad = ~np.isfinite(array)
            if bad.any():
                where = ""
                if name == "deltas":
                    targets = sorted({ARKIT_NAMES[i] for i in np.nonzero(bad.any(axis=(1, 2)))[0]})
                    where = f" in targets {targets}"
                raise ValueError(f"{name} must be finite, got {int(bad.sum())} NaN/inf values{where}")
        extent = float((self.neutral.max(axis=0) - self.neutral.min(axis=0)).max())
        low, high = _FACE_EXTENT_MM
        if not low <= extent <= high:
            hint = ""
            if extent < low:
                guess = "metres" if extent * 1000 >= low else "centimetres" if extent * 10 >= low else "unknown units"
                hint = f" (it looks like {guess}: convert to millimetres)"
            raise ValueError(
                f"neutral must be a face in millimetres (largest bounding-box side between {low:g} and {high:g} mm), "
                f"got {extent:.4g}{hint}"
            )
        max_delta = float(np.abs(self.deltas).max())
        if max_delta > extent:
            raise ValueError(
                f"deltas must be millimetre offsets smaller than the face ({extent:.1f} mm), got a largest offset of "
                f"{max_delta:.4g}: are neutral and deltas in the same units?"
            )
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= num_vertices):
            raise ValueError(
                f"faces must hold vertex ids in [0, {num_vertices}), got ids in "
                f"[{self.faces.min()}, {self.faces.max()}]"
            )
        missing = [r for r in REGION_NAMES if r not in self.regions]
        if missing:
            raise ValueError(f"regions must include {list(REGION_NAMES)}, missing {missing}")
        for name, ids in self.regions.items():
            if ids.size == 0:
                raise ValueError(f"region {name!r} must hold at least one vertex id, got none")
            if ids.min() < 0 or ids.max() >= num_vertices:
                raise ValueError(
                    f"region {name!r} must hold vertex ids in [0, {num_vertices}), got ids in "
                    f"[{ids.min()}, {ids.max()}]"
                )
            self.regions[name] = np.unique(ids)
        if self.landmarks is not None and self.landmarks.size:
            if self.landmarks.min() < 0 or self.landmarks.max() >= num_vertices:
                raise ValueError(
                    f"landmarks must hold vertex ids in [0, {num_vertices}), got ids in "
                    f"[{self.landmarks.min()}, {self.landmarks.max()}]"
                )

    # ---- properties ----
    @property
    def num_vertices(self) -> int:
        return int(self.neutral.shape[0])

    @property
    def names(self) -> tuple[str, ...]:
        """Blendshape names of ``deltas``' first axis (always ``ARKIT_NAMES``)."""
        return ARKIT_NAMES

    def region(self, name: str) -> np.ndarray:
        """Vertex ids of a region (``"lips"``, ``"eye_forehead"``, ...)."""
        if name not in self.regions:
            raise ValueError(f"region must be one of {sorted(self.regions)}, got {name!r}")
        return self.regions[name]

    def __repr__(self) -> str:
        sizes = {k: int(v.size) for k, v in self.regions.items()}
        return (
            f"FaceRig(vertices={self.num_vertices}, faces={len(self.faces)}, regions={sizes}, source={self.source!r})"
        )

    # ---- evaluation ----
    def vertices(self, blendshapes: Any, indices: Sequence[int] | np.ndarray | None = None):
        """Mesh vertices for ARKit coefficients.

        Args:
            blendshapes: ``[..., 52]`` coefficients in ``ARKIT_NAMES`` order (numpy array or torch tensor; any
                leading batch / time axes).
            indices: optional vertex ids (e.g. ``rig.region("lips")``) to compute only those vertices.

        Returns:
            ``[..., V, 3]`` vertices in mm (``V`` = number of vertices or of ``indices``), the same type as the
            input (torch: same device, float dtype of the input).
        """
        if _is_torch(blendshapes):
            return self._vertices_torch(blendshapes, indices)
        offsets, neutral = self._offsets_numpy(blendshapes, indices)
        return offsets + neutral

    def offsets(self, blendshapes: Any, indices: Sequence[int] | np.ndarray | None = None):
        """Vertex offsets from the neutral face, ``[..., V, 3]`` mm (``vertices - neutral``; numpy or torch)."""
        if _is_torch(blendshapes):
            neutral, _ = self._torch_arrays(blendshapes.device, blendshapes.dtype, indices)
            return self._vertices_torch(blendshapes, indices) - neutral
        return self._offsets_numpy(blendshapes, indices)[0]

    def _offsets_numpy(self, blendshapes: Any, indices) -> tuple[np.ndarray, np.ndarray]:
        """Offsets ``[..., V, 3]`` mm of numpy-like blendshapes ``[..., 52]`` and the neutral vertices ``[V, 3]``,
        both float64 for float64 input, float32 otherwise."""
        weights = np.asarray(blendshapes)
        if weights.shape[-1:] != (NUM_BLENDSHAPES,):
            raise ValueError(f"blendshapes must have shape [..., 52], got shape {weights.shape}")
        dtype = np.float64 if weights.dtype == np.float64 else np.float32
        neutral, deltas = self._subset(indices)
        flat = deltas.reshape(NUM_BLENDSHAPES, -1).astype(dtype, copy=False)
        offsets = weights.astype(dtype, copy=False) @ flat  # [..., V*3]
        return offsets.reshape(weights.shape[:-1] + neutral.shape), neutral.astype(dtype, copy=False)

    def _subset(self, indices) -> tuple[np.ndarray, np.ndarray]:
        if indices is None:
            return self.neutral, self.deltas
        indices = np.asarray(indices, dtype=np.int64)
        return self.neutral[indices], self.deltas[:, indices]

    def _torch_arrays(self, device, dtype, indices):
        import torch

        if not dtype.is_floating_point:
            dtype = torch.float32
        key = (str(device), dtype, None if indices is None else np.asarray(indices, dtype=np.int64).tobytes())
        if key not in self._torch_cache:
            neutral, deltas = self._subset(indices)
            self._torch_cache[key] = (
                torch.as_tensor(neutral, device=device, dtype=dtype),
                torch.as_tensor(deltas.reshape(NUM_BLENDSHAPES, -1), device=device, dtype=dtype),
            )
        return self._torch_cache[key]

    def _vertices_torch(self, blendshapes, indices):
        if blendshapes.shape[-1] != NUM_BLENDSHAPES:
            raise ValueError(f"blendshapes must have shape [..., 52], got shape {tuple(blendshapes.shape)}")
        neutral, flat = self._torch_arrays(blendshapes.device, blendshapes.dtype, indices)
        weights = blendshapes.to(flat.dtype)
        return (weights @ flat).reshape(*weights.shape[:-1], *neutral.shape) + neutral

    # ---- file formats ----
    @classmethod
    def from_npz(cls, path: str | os.PathLike) -> FaceRig:
        """Load a rig file in esarm's format (see the module docstring; names in any order, alphabetical is usual).

        Optional key ``units`` ("mm", "cm" or "m") converts to millimetres. Integer ``deltas`` are scaled by
        ``deltas_scale`` (the quantised format of :meth:`save_npz`); float16 deltas are widened to float32.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path must be a rig file, got {path} (no such file)")
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        required = ["names", "neutral", "deltas", *REGION_NAMES]
        missing_keys = [k for k in required if k not in arrays]
        if missing_keys:
            raise ValueError(f"rig file {path} must contain arrays {required}, missing {missing_keys}")
        names = [str(n) for n in arrays["names"].tolist()]
        deltas = np.asarray(arrays["deltas"])
        if deltas.ndim != 3 or deltas.shape[0] != len(names):
            raise ValueError(
                f"deltas in {path} must have shape [len(names)={len(names)}, vertices, 3], got shape {deltas.shape}"
            )
        if deltas.dtype.kind in "iu":
            if "deltas_scale" not in arrays or arrays["deltas_scale"].shape != (len(names),):
                raise ValueError(
                    f"rig file {path} has integer deltas, so it must have deltas_scale of shape [{len(names)}] "
                    f"(units per step of each target), got {arrays.get('deltas_scale', np.array([])).shape}"
                )
            deltas = deltas.astype(np.float32) * arrays["deltas_scale"].astype(np.float32)[:, None, None]
        scale = units_scale(str(arrays["units"]) if "units" in arrays else "mm", argument=f"units in {path}")
        regions = {k: arrays[k] for k in REGION_NAMES}
        regions.update({k[len("region_") :]: v for k, v in arrays.items() if k.startswith("region_")})
        return cls(
            neutral=np.asarray(arrays["neutral"], np.float32) * scale,
            deltas=_deltas_in_arkit_order(deltas, names, source=str(path)) * scale,
            faces=arrays.get("faces", np.zeros((0, 3), np.int64)),
            regions=regions,
            landmarks=arrays.get("landmarks"),
            source=str(arrays["source"]) if "source" in arrays else str(path),
        )

    def save_npz(self, path: str | os.PathLike, quantize: bool = False) -> Path:
        """Write the rig in esarm's npz format (names alphabetical, like ICT conversions), atomically, mode 0644.

        Args:
            path: the ``.npz`` file.
            quantize: store ``deltas`` as int16 with one scale per target (``deltas_scale``, mm per step). The
                largest error is half a step, ``max |delta| / 65534``: 0.0006 mm on ICT-FaceKit, whose largest
                offset is 41 mm, against 0.016 mm for float16 deltas; and the file is smaller (ICT-FaceKit's face
                area: 1.4 MB, against 1.6 MB with float16 and 2.4 MB with float32 deltas).
        """
        order = [BLENDSHAPE_INDEX[n] for n in ARKIT_NAMES_ALPHABETICAL]
        deltas = self.deltas[order].astype(np.float32)
        arrays: dict[str, np.ndarray] = {
            "names": np.array(ARKIT_NAMES_ALPHABETICAL),
            "neutral": self.neutral.astype(np.float32),
            "deltas": deltas,
            "faces": self.faces.astype(np.int32),
            "units": np.array("mm"),
            "source": np.array(self.source),
        }
        if quantize:
            largest = np.abs(deltas).reshape(NUM_BLENDSHAPES, -1).max(axis=1)
            step = np.where(largest > 0, largest / np.iinfo(np.int16).max, 1.0).astype(np.float32)
            arrays["deltas"] = np.round(deltas / step[:, None, None]).astype(np.int16)
            arrays["deltas_scale"] = step
        for name, ids in self.regions.items():
            arrays[name if name in REGION_NAMES else f"region_{name}"] = ids.astype(np.int32)
        if self.landmarks is not None:
            arrays["landmarks"] = self.landmarks.astype(np.int32)
        # np.savez_compressed appends ".npz" to names without it: the temporary file must have it.
        return atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays), suffix=".npz")

    @classmethod
    def from_ict_facekit(
        cls,
        path: str | os.PathLike,
        landmarks: Sequence[int] | None = None,
        face_area_vertices: int | None = None,
    ) -> FaceRig:
        """Convert an ICT-FaceKit checkout (or its ``FaceXModel`` folder): see
        :func:`esarm.rig.ict_facekit.convert_ict_facekit`."""
        return cls(**convert_ict_facekit(path, landmarks=landmarks, face_area_vertices=face_area_vertices))

    @classmethod
    def from_gltf(
        cls,
        path: str | os.PathLike,
        mesh: str | int | None = None,
        regions: Mapping[str, Sequence[int]] | None = None,
        units: str = "m",
    ) -> FaceRig:
        """Read a glTF / GLB head with ARKit-named morph targets: see :func:`esarm.rig.gltf.read_gltf_rig`."""
        return cls(**read_gltf_rig(path, mesh=mesh, regions=regions, units=units))

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> FaceRig:
        """Load a rig from a ``.npz``, a ``.glb`` / ``.gltf`` file or an ICT-FaceKit folder."""
        path = Path(path).expanduser()
        if path.is_dir():
            return cls.from_ict_facekit(path)
        if path.suffix.lower() in (".glb", ".gltf"):
            return cls.from_gltf(path)
        return cls.from_npz(path)

    @classmethod
    def default(cls, download: bool = False, cache_dir: str | os.PathLike | None = None) -> FaceRig:
        """The rig a user gets when they name none: :func:`resolve_rig` with ``rig=None``."""
        return resolve_rig(None, download=download, cache_dir=cache_dir)


_logged: set[str] = set()


def _log_once(message: str, *args: object) -> None:
    """Log which rig is used the first time only: a pipeline resolves it in every stage (five times in the demo)."""
    text = message % args
    if text not in _logged:
        _logged.add(text)
        logger.info(text)


def resolve_rig(
    rig: FaceRig | str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> FaceRig:
    """The one rule for which face rig is used, by metrics, training, the renderer and the exporters.

    In order: ``rig`` itself (a :class:`FaceRig`, or a path for :meth:`FaceRig.from_path`); ``$ESARM_RIG``; the
    full-precision ICT-FaceKit conversion in ``cache_dir``; with ``download=True``, ICT-FaceKit downloaded at a
    pinned commit (sha256-checked), converted and cached there; else the rig embedded in the package
    (:data:`EMBEDDED_RIG`), so that a machine without network access always has a rig.

    Args:
        rig: a rig, a path to one, or ``None``.
        download: download and convert ICT-FaceKit when no converted copy is cached (network access needed).
        cache_dir: where converted rigs are cached (default :func:`default_cache_dir`).

    Raises:
        FileNotFoundError: ``rig`` or ``$ESARM_RIG`` names a path that does not exist.
        OSError: ``download=True`` and the download failed or a file's checksum differs from the pinned one.
    """
    if isinstance(rig, FaceRig):
        return rig
    if rig is not None and not isinstance(rig, (str, os.PathLike)):
        raise TypeError(f"rig must be a FaceRig, a path or None, got {type(rig).__name__}")
    if rig is not None:
        if not Path(rig).expanduser().exists():
            raise FileNotFoundError(f"rig must be a rig file or an ICT-FaceKit folder, got {rig} (no such path)")
        return FaceRig.from_path(rig)
    env = os.environ.get(RIG_ENV)
    if env:
        if not Path(env).expanduser().exists():
            raise FileNotFoundError(
                f"{RIG_ENV} must name a rig file or an ICT-FaceKit folder, got {env} (no such path); unset it to "
                "use the rig embedded in esarm"
            )
        _log_once("Face rig from %s=%s", RIG_ENV, env)
        return FaceRig.from_path(env)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache / ICT_RIG_FILENAME
    if cached.is_file():
        _log_once("Face rig from the cache: %s", cached)
        return FaceRig.from_npz(cached)
    if download:
        source = download_ict_facekit(cache / f"ict-facekit-{ICT_FACEKIT_COMMIT[:7]}")
        converted = FaceRig.from_ict_facekit(source)
        converted.save_npz(cached)
        logger.info("Converted ICT-FaceKit to %s", cached)
        return converted
    _log_once("Face rig embedded in esarm: %s", EMBEDDED_RIG.name)
    return FaceRig.from_npz(EMBEDDED_RIG)


def _deltas_in_arkit_order(deltas: np.ndarray, names: Sequence[str], source: str) -> np.ndarray:
    normalised = [normalise_target_name(n) for n in names]
    missing = [n for n in ARKIT_NAMES if n not in normalised]
    if missing:
        raise ValueError(f"rig {source} must have a target for each of the 52 ARKit blendshapes, missing {missing}")
    position = {n: i for i, n in enumerate(normalised)}
    return np.stack([np.asarray(deltas[position[n]], dtype=np.float32) for n in ARKIT_NAMES])


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "device")
