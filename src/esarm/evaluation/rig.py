"""A face rig: neutral mesh + one vertex-delta target per ARKit blendshape, in millimetres, with vertex regions.

Evaluation turns 52 ARKit coefficients into mesh vertices (``vertices = neutral + Σ weight · delta``) so that
vertex metrics (LVE on the ``"lips"`` region, EVE on the ``"eye_forehead"`` region) can be computed in millimetres.

Sources of a rig:

- :meth:`FaceRig.from_npz` — the package's own rig file (the format of ``ict_facekit_arkit.npz``: alphabetical
  ``names``, ``neutral`` [V, 3] mm, ``deltas`` [52, V, 3] mm, ``faces``, ``lips``, ``eye_forehead``, ``landmarks``).
- :meth:`FaceRig.from_ict_facekit` — converts a checkout of ICT-FaceKit (USC ICT, MIT licence) with this
  package's code: face area only, ICT's ``_L``/``_R`` targets -> ARKit ``Left``/``Right``, ``browInnerUp`` and
  ``cheekPuff`` = sum of ICT's left and right targets, ``tongueOut`` zero, centimetres -> millimetres, regions
  from ICT's 68 landmarks.
- :meth:`FaceRig.from_gltf` — any glTF / GLB head whose morph targets carry ARKit names.
- :meth:`FaceRig.default` — ``$ESARM_RIG``, then the user cache, then (online) ICT-FaceKit downloaded at a pinned
  commit, checksum-verified, converted and cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..blendshapes import ARKIT_NAMES, ARKIT_NAMES_ALPHABETICAL, BLENDSHAPE_INDEX, NUM_BLENDSHAPES
from ..utils import atomic_write

logger = logging.getLogger(__name__)

REGION_NAMES: tuple[str, ...] = ("lips", "eye_forehead")
"""Vertex regions every rig carries: ``lips`` (LVE) and ``eye_forehead`` (EVE, FDD)."""

# Plausible size of a face, in millimetres: the largest side of the neutral mesh's bounding box.
_FACE_EXTENT_MM = (60.0, 600.0)

# ---- ICT-FaceKit (https://github.com/ICT-VGL/ICT-FaceKit, MIT licence, (c) 2020 USC ICT) ----
ICT_FACEKIT_REPO = "ICT-VGL/ICT-FaceKit"
ICT_FACEKIT_COMMIT = "da5f95a607f5e6b37755b38d3385d7f2853732e5"
ICT_FACEKIT_RAW_URL = f"https://raw.githubusercontent.com/{ICT_FACEKIT_REPO}/{ICT_FACEKIT_COMMIT}/FaceXModel"
ICT_FACE_AREA_VERTICES = 9409  # ICT's "Face" geometry is vertices [0, 9408]; the rest is head, mouth socket, eyes...
ICT_UNITS_TO_MM = 10.0  # ICT's OBJ files are in centimetres.
# ICT's 68 iBUG / Multi-PIE landmark vertex ids (ICT-FaceKit README, "Facial Landmarks"), all in the face area.
ICT_LANDMARKS_68: tuple[int, ...] = (
    1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927, 3924, 2608, 3272, 4088, 3443, 268, 493,
    1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509, 978, 4527, 4942, 4857, 1140, 2075, 1147, 4269, 3360, 1507, 1542,
    1537, 1528, 1518, 1511, 3742, 3751, 3756, 3721, 3725, 3732, 5708, 5695, 2081, 0, 4275, 6200, 6213, 6346, 6461,
    5518, 5957, 5841, 5702, 5711, 5533, 6216, 6207, 6470, 5517, 5966,
)  # fmt: skip
# sha256 of each file of ICT-FaceKit/FaceXModel at ICT_FACEKIT_COMMIT that the conversion reads.
ICT_FACEKIT_SHA256: dict[str, str] = {
    "generic_neutral_mesh.obj": "eedbc2576d8e5ea57f55255b8f98263213a1efb5431d8bfceed1d7aef10271f9",
    "browDown_L.obj": "d1dcd14fc085a9e258dec62a4bfe4a31d592cce5d8918a3892c20f480653f4c1",
    "browDown_R.obj": "66a2c72ab64999af168795f27182d011f52b90958c402d719d3ec8ff7d1c8939",
    "browInnerUp_L.obj": "81fb1625794ea36fb13303234ce06cef798acfdbc489077e22ae195a705bc92e",
    "browInnerUp_R.obj": "5e66b46cdad89fd1237273db2b885511688cf37636cedfdde432a4844c9109e7",
    "browOuterUp_L.obj": "022d5342687e51351f4cad6dd1abd42c3bb1b752d0b235bdc7fc588ab0d79c90",
    "browOuterUp_R.obj": "1e4722060538b274ed49ed872525d770b5bfd9262b7bce1b6310f49356f5b531",
    "cheekPuff_L.obj": "f53fd2bdeb8e26d0db8a684ab9c095c6bb113b74575dec329facae2799ff18c6",
    "cheekPuff_R.obj": "cd5b5d0f3a653a1fa31abeb65daf8fd6ffdf83a4d1bf22333a469b13b96fa801",
    "cheekSquint_L.obj": "572fe87f2e0cdd0a7ff868b9173d0ff08ee2bc73bf94c17b603f6e5d5b8fbe26",
    "cheekSquint_R.obj": "a9afa0aac432159e89eb54dbbb3139864b8cc1c4208c3c0e9c420d0d8050b99a",
    "eyeBlink_L.obj": "f5ed1c3072a400083b7d4f7f5cb3d73882b7ebb95c3232f957394db8cf7fe19e",
    "eyeBlink_R.obj": "d281ad0af03e89a70abf1214d52c295b3a279c9b35f6795938c4487f467ca003",
    "eyeLookDown_L.obj": "e7da4fa6509af5da25fab1a34255889a68f06b90fd37f65c6c05e5bdbbe2f755",
    "eyeLookDown_R.obj": "ac466de6decf619701f3ee7f80fa7371020d325084b41ad7f4b2840e232abf83",
    "eyeLookIn_L.obj": "1e037332bc059a95d05fcb24728ae297a2d4d268ff0cf623d3647d2a4f86bd31",
    "eyeLookIn_R.obj": "3d64db0e51ad28e76eff56217da401c5ee563b5e76a207cb192046465bbab14a",
    "eyeLookOut_L.obj": "235739695136c40b7a2c3239a100ff75b7bfc271ae195aeb55330848c999c9c8",
    "eyeLookOut_R.obj": "ac10dfa83ccaca7fd76fe96d74f8cbc80582e2ef914d1092827b54f88125650e",
    "eyeLookUp_L.obj": "72ed342df43489a76e9d468df3ca7f48328f41c924af0c03d88fde9905d82848",
    "eyeLookUp_R.obj": "d8ade1cab9f7f0c4ef6ec007f33e9c9df90a58c666b9aac5a784192cd389e899",
    "eyeSquint_L.obj": "ecb8244f083cf55fa9f0277427b8213315176a624d9ac3a09b533c7fbc68917e",
    "eyeSquint_R.obj": "0dffbbc651b9cdbc346ead32ba102051200c72ed8a93e7b33f07149e18390b8a",
    "eyeWide_L.obj": "015a995b0f09783683f5575af7e4c939cd758d194d7ca2e8ffacb9ddbabf0078",
    "eyeWide_R.obj": "4b8207f6013a751ae35affba62cc70bd6b53e046bbe48e8fd5a150450a7789ed",
    "jawForward.obj": "a0126b2926b69540f478e4c48f05e370868050e6c33718e53c2f17e190a3b239",
    "jawLeft.obj": "5af90cd941660fb0116948866414e4321035de754b7ebec787f8144445d2d9e9",
    "jawOpen.obj": "8d84355e10f48b05550980cee385bcd426f4797090da76a20de0535bb2f99f4a",
    "jawRight.obj": "d719335ad69a8f18797501d4728910c7a467aecbbae260923192b1bf242eec97",
    "mouthClose.obj": "4a44b94c269407cf1171483d87d99d2cbdea9c66242aabf2ad0f57cb785aa193",
    "mouthDimple_L.obj": "189f6e01adbf1e13147fe4d505d1f3006e5ce4590ae150064b810274093d29b0",
    "mouthDimple_R.obj": "4cf674b98d6d34a16fab462fbd9ecb2cb5e39ccaf3f50459b9ac7d59fbd6a215",
    "mouthFrown_L.obj": "1bfd720ad024e5805ac8472df170c2c96c09e817e02b66f916057d6e2d31ee9b",
    "mouthFrown_R.obj": "ae3da92fa1dc70010c6bec810338d740287c71b8730694c97876cab5af241f74",
    "mouthFunnel.obj": "d4f1dba04c1af5fc37452c88cc54a72f1133296c26d9abe0f8adb74dc5c2577f",
    "mouthLeft.obj": "01fb69aa8ac07c5762719c9bb2eec5372652c9f1e73509a63d01e7e60e28b885",
    "mouthLowerDown_L.obj": "8847660d51e2a72f2bce6ce9add7d58abab1cef967420db83056891291c0b2de",
    "mouthLowerDown_R.obj": "b5143ed50d41c91d80ddc8b565f6274eaf514509ec6f895797db34ca92a85b68",
    "mouthPress_L.obj": "de2bdaf2fa7199294ff7a281cd8f6647bf5ca9a6f84588bd7f7779fff4c61396",
    "mouthPress_R.obj": "ca8d9973b3231e51b8b76d3e7af7f7f3432959b7c37148fc25e7c643252847b6",
    "mouthPucker.obj": "9929c31025667683809f70df7dce612f72e3acfc7f9e8acb939f6636509dbc5c",
    "mouthRight.obj": "e3faaf5ed51715e77122d76e8187d5ba83ea9f54e15e29c52e64f26c52e66bda",
    "mouthRollLower.obj": "1f577e1129eef4f9e9dc26aa739c6d0f15b27253dee89af3428db6816666e910",
    "mouthRollUpper.obj": "a69ec7407adfd6a5f4c818179bb4604d9e506c07671976f75ac33ef8f54a1bb0",
    "mouthShrugLower.obj": "1eedd7831b0408bdcbc9aefe23b11803c54f81da5fc9be1fe81fc7a5117c0b88",
    "mouthShrugUpper.obj": "2bd3e3f1568366f2fd84717f0f63aee9f56eed4c303fc4f234aadd81d430032c",
    "mouthSmile_L.obj": "91794e73cef330f1c7d1f4541723544708536b39d5dd6ed35fd8f83f676b7af4",
    "mouthSmile_R.obj": "3fb3de3da9f8358edbb933a65ce6e44c25a2501f30dcb240daea725b68adac84",
    "mouthStretch_L.obj": "9187105730bad43023c63e2a91c979091b9289dd8fc1b587885412b8f7a3d2b7",
    "mouthStretch_R.obj": "d985452085a19d6b3da397ca2cd2f938d8e08761d2e684e87640f3639bdf5f6d",
    "mouthUpperUp_L.obj": "d49483aca6cbbb7a559edf4865aec62970560ddf3a0d34e5b208488bff59f722",
    "mouthUpperUp_R.obj": "299e3da0f36ca80c0c74e51900b67bfe6bb5b0101aaf46ce30075064c26a7f02",
    "noseSneer_L.obj": "47c5d66ddc1ba146480f0e43b1084f439e0e7d2af31bcec3e6a3bffc420ffa4d",
    "noseSneer_R.obj": "c384c41331124b9cd4b99c1bbe8aef56318cae2b8db6ff0f573a7347ebbe8caa",
}
ICT_RIG_FILENAME = f"ict_facekit_arkit_{ICT_FACEKIT_COMMIT[:7]}.npz"

# Region construction from iBUG-68 landmarks (ICT conversion).
LIP_RADIUS_MM = 6.0  # lips: within 6 mm of the 20 mouth landmarks (48-67)
EYE_BROW_RADIUS_MM = 10.0  # eyes + brows: within 10 mm of the brow (17-26) and eye (36-47) landmarks
FOREHEAD_SIDE_MARGIN_MM = 5.0  # forehead: above the lowest brow landmark, up to 5 mm beyond the outer brow ends

RIG_HELP = (
    "Get a face rig in one of these ways: (1) set ESARM_RIG to a rig file (.npz in esarm's format, or a .glb/.gltf "
    "head whose morph targets carry ARKit names, or an ICT-FaceKit checkout folder); (2) on a machine with internet "
    'access run `python -c "from esarm.evaluation import FaceRig; FaceRig.default(download=True)"` once: it downloads '
    f"ICT-FaceKit (MIT licence) at commit {ICT_FACEKIT_COMMIT[:7]}, converts it and caches it in {{cache}}; copy that "
    "file to offline machines' cache or point ESARM_RIG at it; (3) `git clone https://github.com/ICT-VGL/ICT-FaceKit` "
    f"(commit {ICT_FACEKIT_COMMIT[:7]}) and call `FaceRig.from_ict_facekit(path).save_npz(...)`."
)


def ict_name_for(arkit_name: str, available: Sequence[str]) -> list[str]:
    """ICT-FaceKit expression names whose deltas sum to the ARKit target ``arkit_name``.

    ICT keeps ARKit's names with ``_L`` / ``_R`` for sides (``eyeBlink_L``), and splits ``browInnerUp`` and
    ``cheekPuff`` into left and right halves. It has no tongue (``tongueOut`` -> ``[]``). Full names win over the
    suffix rule, so ``jawLeft`` / ``mouthLeft`` stay themselves.
    """
    available = set(available)
    if arkit_name in available:
        return [arkit_name]
    for suffix, ict_suffix in (("Left", "_L"), ("Right", "_R")):
        if arkit_name.endswith(suffix) and arkit_name[: -len(suffix)] + ict_suffix in available:
            return [arkit_name[: -len(suffix)] + ict_suffix]
    halves = [arkit_name + "_L", arkit_name + "_R"]
    if all(h in available for h in halves):
        return halves
    return []


def default_cache_dir() -> Path:
    """Folder for cached rigs: ``$ESARM_HOME/rigs`` (like ``HF_HOME``), else ``$XDG_CACHE_HOME/esarm/rigs``, else
    ``~/.cache/esarm/rigs``."""
    if os.environ.get("ESARM_HOME"):
        return Path(os.environ["ESARM_HOME"]).expanduser() / "rigs"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "esarm" / "rigs"


def _is_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("ESARM_OFFLINE", "HF_HUB_OFFLINE"))


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
        """Load a rig file in esarm's format (see module docstring; names in any order, alphabetical is usual).

        Optional key ``units`` ("mm", "cm" or "m") converts to millimetres.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"rig file not found: {path}")
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
        scale = _units_scale(str(arrays["units"]) if "units" in arrays else "mm", argument=f"units in {path}")
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

    def save_npz(self, path: str | os.PathLike) -> Path:
        """Write the rig in esarm's npz format (names alphabetical, like ICT conversions), atomically."""
        order = [BLENDSHAPE_INDEX[n] for n in ARKIT_NAMES_ALPHABETICAL]
        arrays: dict[str, np.ndarray] = {
            "names": np.array(ARKIT_NAMES_ALPHABETICAL),
            "neutral": self.neutral.astype(np.float32),
            "deltas": self.deltas[order].astype(np.float32),
            "faces": self.faces.astype(np.int32),
            "units": np.array("mm"),
            "source": np.array(self.source),
        }
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
        """Convert an ICT-FaceKit checkout (or its ``FaceXModel`` folder) into an ARKit rig in millimetres.

        Reads ``generic_neutral_mesh.obj`` and one OBJ per expression (names from ``vertex_indices.json``'s
        ``expressions`` when present). Keeps the face area (ICT vertices 0-9408 and the polygons on them, quads
        split in two triangles), maps ICT's ``_L``/``_R`` to ARKit ``Left``/``Right``, sums ICT's halves of
        ``browInnerUp`` and ``cheekPuff``, leaves ``tongueOut`` zero, converts centimetres to millimetres and
        builds the regions from ICT's 68 landmarks: lips = vertices within 6 mm of the 20 mouth landmarks;
        eye_forehead = vertices within 10 mm of the brow and eye landmarks plus the forehead above the lowest brow
        landmark (up to 5 mm beyond the outer brow ends).

        Args:
            path: the checkout or its ``FaceXModel`` folder.
            landmarks: 68 iBUG landmark vertex ids (default ``ICT_LANDMARKS_68``, from ICT-FaceKit's README).
            face_area_vertices: number of leading vertices forming the face area (default 9409).
        """
        landmarks = ICT_LANDMARKS_68 if landmarks is None else landmarks
        face_area_vertices = ICT_FACE_AREA_VERTICES if face_area_vertices is None else face_area_vertices
        folder = Path(path)
        if (folder / "FaceXModel").is_dir():
            folder = folder / "FaceXModel"
        neutral_path = folder / "generic_neutral_mesh.obj"
        if not neutral_path.is_file():
            raise FileNotFoundError(
                f"ICT-FaceKit model not found: expected {neutral_path} (pass the ICT-FaceKit checkout or its "
                "FaceXModel folder)"
            )
        config_path = folder / "vertex_indices.json"
        if config_path.is_file():
            expressions = list(json.loads(config_path.read_text())["expressions"])
        else:
            expressions = [p.stem for p in sorted(folder.glob("*.obj")) if p.stem != "generic_neutral_mesh"]
        neutral_full, polygons = read_obj(neutral_path, with_faces=True)
        face_area = min(face_area_vertices, len(neutral_full))
        neutral = neutral_full[:face_area]

        deltas = np.zeros((NUM_BLENDSHAPES, face_area, 3), dtype=np.float64)
        missing = []
        cache: dict[str, np.ndarray] = {}
        for i, name in enumerate(ARKIT_NAMES):
            if name == "tongueOut":
                continue  # ICT has no tongue target
            ict_names = ict_name_for(name, expressions)
            files = [folder / f"{n}.obj" for n in ict_names]
            if not ict_names or not all(f.is_file() for f in files):
                missing.append(name)
                continue
            for ict_name, file in zip(ict_names, files):
                if ict_name not in cache:
                    target, _ = read_obj(file)
                    if len(target) != len(neutral_full):
                        raise ValueError(
                            f"{file} must have the same vertices as generic_neutral_mesh.obj ({len(neutral_full)}), "
                            f"got {len(target)}"
                        )
                    cache[ict_name] = target[:face_area] - neutral
                deltas[i] += cache[ict_name]
        if missing:
            raise ValueError(f"ICT-FaceKit folder {folder} lacks targets for ARKit blendshapes {missing}")

        triangles = _triangulate([p for p in polygons if max(p) < face_area])
        neutral_mm = (neutral * ICT_UNITS_TO_MM).astype(np.float32)
        landmarks = np.asarray(landmarks, dtype=np.int64)
        if len(landmarks) != 68 or landmarks.max() >= face_area:
            raise ValueError(
                f"landmarks must be 68 vertex ids of the face area (< {face_area}), got {len(landmarks)} ids up to "
                f"{landmarks.max()}"
            )
        return cls(
            neutral=neutral_mm,
            deltas=(deltas * ICT_UNITS_TO_MM).astype(np.float32),
            faces=triangles,
            regions=regions_from_landmarks(neutral_mm, landmarks),
            landmarks=landmarks,
            source=(
                f"ICT-FaceKit (github {ICT_FACEKIT_REPO}, converted from {folder}), MIT License, Copyright (c) 2020 "
                "USC Institute for Creative Technologies; face area only; browInnerUp/cheekPuff = L+R; tongueOut "
                "has no target (zero delta)"
            ),
        )

    @classmethod
    def from_gltf(
        cls,
        path: str | os.PathLike,
        mesh: str | int | None = None,
        regions: Mapping[str, Sequence[int]] | None = None,
        units: str = "m",
    ) -> FaceRig:
        """Read a glTF / GLB head whose morph targets carry ARKit names (ARKit-ready avatar exports).

        Args:
            path: ``.glb`` or ``.gltf`` file.
            mesh: name or index of the mesh to read; by default the mesh whose target names cover the most ARKit
                names. All triangle primitives of that mesh are concatenated.
            regions: vertex ids per region; by default derived from the targets themselves (see
                :func:`regions_from_targets`). Extras ``{"esarm_regions": {...}}`` on the mesh are used when present.
            units: length unit of the file (glTF's is metres); converted to millimetres.

        Target names come from ``mesh.extras.targetNames`` (the glTF convention) or the primitives' extras. Names
        compare case-insensitively on the first letter (Live Link's ``JawOpen``); all 52 must be present, except
        ``tongueOut``, which is taken as zero when absent (most heads have no tongue target). The node transform
        of the first node using the mesh is applied.
        """
        from pygltflib import GLTF2

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"glTF file not found: {path}")
        gltf = GLTF2().load(str(path))
        if not gltf.meshes:
            raise ValueError(f"{path} must contain a mesh with ARKit morph targets, got no meshes")
        candidates = []
        for index, candidate in enumerate(gltf.meshes):
            names = _gltf_target_names(candidate)
            known = {_normalise(n) for n in names} & set(ARKIT_NAMES)
            candidates.append((len(known), index, names))
        if mesh is None:
            _, mesh_index, names = max(candidates, key=lambda c: (c[0], -c[1]))
        else:
            matches = [i for i, m in enumerate(gltf.meshes) if mesh == i or mesh == m.name]
            if not matches:
                raise ValueError(f"mesh must be one of {[m.name for m in gltf.meshes]} or an index, got {mesh!r}")
            mesh_index = matches[0]
            names = candidates[mesh_index][2]
        gltf_mesh = gltf.meshes[mesh_index]
        normalised = [_normalise(n) for n in names]
        missing = [n for n in ARKIT_NAMES if n not in normalised and n != "tongueOut"]
        if missing:
            raise ValueError(
                f"mesh {gltf_mesh.name or mesh_index!r} in {path} must have morph targets for all 52 ARKit "
                f"blendshapes, "
                f"missing {missing}"
            )
        blob = _gltf_blob(gltf, path)
        positions, target_deltas, triangles, offset = [], [], [], 0
        for primitive in gltf_mesh.primitives:
            if primitive.mode not in (None, 4):
                continue  # points / lines carry no surface
            base = _read_accessor(gltf, blob, primitive.attributes.POSITION)
            if len(primitive.targets or []) != len(names):
                raise ValueError(
                    f"every primitive of mesh {gltf_mesh.name!r} must have {len(names)} morph targets, got "
                    f"{len(primitive.targets or [])}"
                )
            per_target = np.zeros((len(names), len(base), 3), dtype=np.float64)
            for t, target in enumerate(primitive.targets):
                accessor = target.get("POSITION") if isinstance(target, dict) else getattr(target, "POSITION", None)
                if accessor is not None:
                    per_target[t] = _read_accessor(gltf, blob, accessor)
            if primitive.indices is not None:
                tri = _read_accessor(gltf, blob, primitive.indices).astype(np.int64).reshape(-1, 3)
            else:
                tri = np.arange(len(base), dtype=np.int64).reshape(-1, 3)
            positions.append(base)
            target_deltas.append(per_target)
            triangles.append(tri + offset)
            offset += len(base)
        if not positions:
            raise ValueError(f"mesh {gltf_mesh.name!r} in {path} must have a triangle primitive")
        neutral = np.concatenate(positions)
        all_deltas = np.concatenate(target_deltas, axis=1)
        matrix = _gltf_world_matrix(gltf, mesh_index)
        neutral = neutral @ matrix[:3, :3].T + matrix[:3, 3]
        all_deltas = all_deltas @ matrix[:3, :3].T
        scale = _units_scale(units, argument="units")
        deltas = np.zeros((NUM_BLENDSHAPES, len(neutral), 3), dtype=np.float64)
        for t, name in enumerate(normalised):
            if name in BLENDSHAPE_INDEX:
                deltas[BLENDSHAPE_INDEX[name]] = all_deltas[t]
        neutral_mm = (neutral * scale).astype(np.float32)
        deltas_mm = (deltas * scale).astype(np.float32)
        if regions is None:
            extras = gltf_mesh.extras if isinstance(gltf_mesh.extras, dict) else {}
            regions = extras.get("esarm_regions") or regions_from_targets(neutral_mm, deltas_mm)
        return cls(
            neutral=neutral_mm,
            deltas=deltas_mm,
            faces=np.concatenate(triangles),
            regions=dict(regions),
            source=f"glTF {path.name}, mesh {gltf_mesh.name or mesh_index!r}",
        )

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
    def default(cls, download: bool | None = None, cache_dir: str | os.PathLike | None = None) -> FaceRig:
        """The evaluation rig: ``$ESARM_RIG``, else the cached ICT-FaceKit conversion, else download it.

        Args:
            download: whether to download ICT-FaceKit when nothing is found. ``None`` (default) downloads unless
                ``ESARM_OFFLINE`` or ``HF_HUB_OFFLINE`` is set.
            cache_dir: where converted rigs are cached (default :func:`default_cache_dir`).

        Raises:
            FileNotFoundError: with instructions to get a rig, when none is found and none can be downloaded.
        """
        env = os.environ.get("ESARM_RIG")
        if env:
            if not Path(env).expanduser().exists():
                raise FileNotFoundError(
                    f"ESARM_RIG points to {env}, which does not exist. "
                    + RIG_HELP.format(cache=cache_dir or default_cache_dir())
                )
            logger.info("Loading face rig from ESARM_RIG=%s", env)
            return cls.from_path(env)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cached = cache / ICT_RIG_FILENAME
        if cached.is_file():
            logger.info("Loading cached face rig %s", cached)
            return cls.from_npz(cached)
        if download is None:
            download = not _is_offline()
        if not download:
            raise FileNotFoundError(
                f"No face rig found (ESARM_RIG is unset and {cached} does not exist) and downloads are off. "
                + RIG_HELP.format(cache=cache)
            )
        try:
            source_dir = download_ict_facekit(cache / f"ict-facekit-{ICT_FACEKIT_COMMIT[:7]}")
        except (OSError, urllib.error.URLError) as error:
            raise FileNotFoundError(
                f"No face rig found and downloading ICT-FaceKit failed ({error}). " + RIG_HELP.format(cache=cache)
            ) from error
        rig = cls.from_ict_facekit(source_dir)
        rig.source += f" @ {ICT_FACEKIT_COMMIT[:7]}"
        rig.save_npz(cached)
        logger.info("Converted ICT-FaceKit to %s", cached)
        return rig


# ---------------------------------------------------------------------------------------------------------------------
# Regions


def regions_from_landmarks(neutral: np.ndarray, landmarks: Sequence[int]) -> dict[str, np.ndarray]:
    """Lip and eye + forehead vertex regions from 68 iBUG landmarks on a y-up, z-forward face in mm.

    lips: vertices within ``LIP_RADIUS_MM`` (6 mm) of the 20 mouth landmarks (48-67). eye_forehead: vertices within
    ``EYE_BROW_RADIUS_MM`` (10 mm) of the brow (17-26) and eye (36-47) landmarks, plus the forehead: vertices above
    the lowest brow landmark and no further sideways than ``FOREHEAD_SIDE_MARGIN_MM`` beyond the outer brow ends.
    """
    neutral = np.asarray(neutral, dtype=np.float64)
    points = neutral[np.asarray(landmarks, dtype=np.int64)]
    if len(points) != 68:
        raise ValueError(f"landmarks must hold 68 iBUG vertex ids, got {len(points)}")

    def near(ids: Sequence[int], radius: float) -> np.ndarray:
        distance = np.sqrt(((neutral[:, None, :] - points[None, list(ids)]) ** 2).sum(-1)).min(axis=1)
        return distance <= radius

    lips = near(range(48, 68), LIP_RADIUS_MM)
    brows = points[17:27]
    forehead = (neutral[:, 1] >= brows[:, 1].min()) & (
        np.abs(neutral[:, 0] - brows[:, 0].mean())
        <= np.abs(brows[:, 0] - brows[:, 0].mean()).max() + FOREHEAD_SIDE_MARGIN_MM
    )
    eye_forehead = near([*range(17, 27), *range(36, 48)], EYE_BROW_RADIUS_MM) | forehead
    return {"lips": np.nonzero(lips)[0], "eye_forehead": np.nonzero(eye_forehead)[0]}


_LIP_TARGETS = ("mouthFunnel", "mouthPucker", "mouthRollLower", "mouthRollUpper")
_EYE_BROW_TARGETS = (
    "eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight", "eyeSquintLeft", "eyeSquintRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
)  # fmt: skip


def regions_from_targets(
    neutral: np.ndarray, deltas: np.ndarray, lip_fraction: float = 0.5, eye_fraction: float = 0.25
) -> dict[str, np.ndarray]:
    """Approximate regions for a rig without landmarks, from what its targets move.

    lips: vertices that a lip-shaping target (funnel, pucker, roll lower / upper) moves by at least
    ``lip_fraction`` of that target's largest offset. eye_forehead: the same over the eye-lid and brow targets with
    ``eye_fraction``. ``deltas`` is ``[52, V, 3]`` in ``ARKIT_NAMES`` order. On the ICT-FaceKit rig these overlap
    the landmark regions by about 70 % (lips) and 65 % (eye_forehead) (intersection over union): pass explicit
    regions when numbers must be compared with a landmark-based rig.
    """
    deltas = np.asarray(deltas)
    regions = {}
    for region, targets, fraction in (
        ("lips", _LIP_TARGETS, lip_fraction),
        ("eye_forehead", _EYE_BROW_TARGETS, eye_fraction),
    ):
        selected = np.zeros(deltas.shape[1], dtype=bool)
        for name in targets:
            motion = np.linalg.norm(deltas[BLENDSHAPE_INDEX[name]], axis=-1)
            if motion.max() > 0:
                selected |= motion >= fraction * motion.max()
        regions[region] = np.nonzero(selected)[0]
    return regions


# ---------------------------------------------------------------------------------------------------------------------
# Download


def download_ict_facekit(directory: str | os.PathLike, files: Mapping[str, str] | None = None) -> Path:
    """Download the ICT-FaceKit files the conversion reads, at ``ICT_FACEKIT_COMMIT``, into ``directory``.

    Each file is checked against its pinned sha256 (``ICT_FACEKIT_SHA256``) and written atomically; files already
    there with the right checksum are kept. Shows a progress bar. Returns ``directory``.
    """
    from tqdm.auto import tqdm

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = dict(ICT_FACEKIT_SHA256 if files is None else files)
    todo = [name for name, digest in files.items() if _sha256(directory / name) != digest]
    if todo:
        logger.info("Downloading %d ICT-FaceKit files (MIT licence) at commit %s", len(todo), ICT_FACEKIT_COMMIT[:7])
    for name in tqdm(todo, desc="ICT-FaceKit", unit="file", disable=not todo):
        _download_file(f"{ICT_FACEKIT_RAW_URL}/{name}", directory / name, files[name])
    config = {"expressions": sorted(n[: -len(".obj")] for n in files if n != "generic_neutral_mesh.obj")}
    (directory / "vertex_indices.json").write_text(json.dumps(config))
    return directory


def _download_file(url: str, destination: Path, sha256: str) -> None:
    """Fetch ``url`` to ``destination`` (atomic), checking its sha256."""

    def fetch(tmp: str) -> None:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise OSError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest.hexdigest()}")

    atomic_write(destination, fetch)


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def read_obj(path: str | os.PathLike, with_faces: bool = False) -> tuple[np.ndarray, list[list[int]]]:
    """Vertices ``[V, 3]`` (float64) and, if asked, polygons (0-based vertex ids) of a Wavefront OBJ file."""
    vertex_tokens: list[str] = []
    polygons: list[list[int]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("v "):
                vertex_tokens.extend(line.split()[1:4])
            elif with_faces and line.startswith("f "):
                polygons.append([int(token.split("/")[0]) - 1 for token in line.split()[1:]])
    vertices = np.array(vertex_tokens, dtype=np.float64).reshape(-1, 3)
    if with_faces:
        count = len(vertices)
        polygons = [[i if i >= 0 else count + i + 1 for i in p] for p in polygons]  # negative = relative ids
    return vertices, polygons


def _triangulate(polygons: Sequence[Sequence[int]]) -> np.ndarray:
    """Fan-split polygons (quads -> (a, b, c), (a, c, d)) into ``[F, 3]`` triangles."""
    triangles = [(p[0], p[k], p[k + 1]) for p in polygons for k in range(1, len(p) - 1)]
    return np.array(triangles, dtype=np.int64).reshape(-1, 3)


def _normalise(name: str) -> str:
    name = str(name).split(".")[-1]  # "blendShape1.jawOpen" (Maya / FBX exports)
    return name[:1].lower() + name[1:]


def _deltas_in_arkit_order(deltas: np.ndarray, names: Sequence[str], source: str) -> np.ndarray:
    normalised = [_normalise(n) for n in names]
    missing = [n for n in ARKIT_NAMES if n not in normalised]
    if missing:
        raise ValueError(f"rig {source} must have a target for each of the 52 ARKit blendshapes, missing {missing}")
    position = {n: i for i, n in enumerate(normalised)}
    return np.stack([np.asarray(deltas[position[n]], dtype=np.float32) for n in ARKIT_NAMES])


def _units_scale(units: str, argument: str) -> float:
    scales = {"mm": 1.0, "millimetres": 1.0, "cm": 10.0, "centimetres": 10.0, "m": 1000.0, "metres": 1000.0}
    if units not in scales:
        raise ValueError(f"{argument} must be one of {sorted(scales)}, got {units!r}")
    return scales[units]


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "device")


def _gltf_target_names(mesh) -> list[str]:
    extras = mesh.extras if isinstance(mesh.extras, dict) else {}
    names = extras.get("targetNames")
    if not names:
        for primitive in mesh.primitives:
            p_extras = primitive.extras if isinstance(primitive.extras, dict) else {}
            if p_extras.get("targetNames"):
                names = p_extras["targetNames"]
                break
    return [str(n) for n in (names or [])]


def _gltf_blob(gltf, path: Path) -> dict[int, bytes]:
    """Bytes of every buffer (GLB binary chunk, data URI or external file)."""
    import base64

    blobs = {}
    for index, buffer in enumerate(gltf.buffers):
        if buffer.uri is None:
            blobs[index] = gltf.binary_blob()
        elif buffer.uri.startswith("data:"):
            blobs[index] = base64.b64decode(buffer.uri.split(",", 1)[1])
        else:
            blobs[index] = (path.parent / buffer.uri).read_bytes()
    return blobs


_COMPONENT_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_TYPE_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def _read_view(gltf, blobs, view_index: int, byte_offset: int, dtype, count: int, width: int) -> np.ndarray:
    view = gltf.bufferViews[view_index]
    data = blobs[view.buffer]
    start = (view.byteOffset or 0) + (byte_offset or 0)
    item = np.dtype(dtype).itemsize * width
    stride = view.byteStride or item
    if stride == item:
        return np.frombuffer(data, dtype=dtype, count=count * width, offset=start).reshape(count, width)
    rows = [np.frombuffer(data, dtype=dtype, count=width, offset=start + i * stride) for i in range(count)]
    return np.stack(rows) if rows else np.zeros((0, width), dtype)


def _read_accessor(gltf, blobs, accessor_index: int) -> np.ndarray:
    """An accessor's values (dense + sparse) as ``[count, width]`` float64 (``[count]`` for scalars)."""
    accessor = gltf.accessors[accessor_index]
    dtype = _COMPONENT_DTYPES[accessor.componentType]
    width = _TYPE_SIZES[accessor.type]
    if accessor.bufferView is None:
        values = np.zeros((accessor.count, width), dtype=np.float64)
    else:
        values = _read_view(gltf, blobs, accessor.bufferView, accessor.byteOffset, dtype, accessor.count, width)
        values = values.astype(np.float64)
    sparse = accessor.sparse
    if sparse is not None and sparse.count:
        idx = sparse.indices
        ids = _read_view(
            gltf, blobs, idx.bufferView, idx.byteOffset, _COMPONENT_DTYPES[idx.componentType], sparse.count, 1
        )
        vals = _read_view(gltf, blobs, sparse.values.bufferView, sparse.values.byteOffset, dtype, sparse.count, width)
        values = values.copy()
        values[ids[:, 0].astype(np.int64)] = vals
    return values[:, 0] if width == 1 else values


def _gltf_world_matrix(gltf, mesh_index: int) -> np.ndarray:
    """World transform (4x4) of the first node that uses the mesh; identity if none."""
    parents = {child: i for i, node in enumerate(gltf.nodes) for child in (node.children or [])}
    node_index = next((i for i, node in enumerate(gltf.nodes) if node.mesh == mesh_index), None)
    matrix = np.eye(4)
    while node_index is not None:
        matrix = _gltf_local_matrix(gltf.nodes[node_index]) @ matrix
        node_index = parents.get(node_index)
    return matrix


def _gltf_local_matrix(node) -> np.ndarray:
    if node.matrix:
        return np.array(node.matrix, dtype=np.float64).reshape(4, 4).T  # glTF matrices are column-major
    x, y, z, w = node.rotation or (0.0, 0.0, 0.0, 1.0)
    rotation = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * np.asarray(node.scale or (1.0, 1.0, 1.0))[None, :]
    matrix[:3, 3] = node.translation or (0.0, 0.0, 0.0)
    return matrix
