"""ICT-FaceKit (https://github.com/ICT-VGL/ICT-FaceKit, MIT licence, (c) 2020 USC ICT) to an ARKit-52 rig.

ICT-FaceKit's FaceXModel holds a generic neutral head and one OBJ per expression, in centimetres, with ARKit's
expression names and ``_L`` / ``_R`` for sides. :func:`convert_ict_facekit` keeps the face area (vertices
0-9408 and the polygons on them), maps ``_L`` / ``_R`` to ARKit's ``Left`` / ``Right``, sums ICT's halves of
``browInnerUp`` and ``cheekPuff``, leaves ``tongueOut`` zero (ICT has no tongue), converts to millimetres and
builds the regions from ICT's 68 landmarks. :func:`download_ict_facekit` fetches the 54 files it reads at a pinned
commit and checks each against a pinned sha256.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..blendshapes import ARKIT_NAMES, NUM_BLENDSHAPES
from ..utils import atomic_write_text, fetch_verified, file_sha256
from .obj import read_obj, triangulate
from .regions import regions_from_landmarks

logger = logging.getLogger(__name__)

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
"""File name of a converted full-precision ICT-FaceKit rig in the user cache."""

ICT_SOURCE = (
    f"ICT-FaceKit (github {ICT_FACEKIT_REPO} @ {ICT_FACEKIT_COMMIT[:7]}), MIT License, Copyright (c) 2020 USC "
    "Institute for Creative Technologies; face area only; browInnerUp/cheekPuff = L+R; tongueOut has no target "
    "(zero delta)"
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


def convert_ict_facekit(
    path: str | os.PathLike,
    landmarks: Sequence[int] | None = None,
    face_area_vertices: int | None = None,
) -> dict[str, Any]:
    """Convert an ICT-FaceKit checkout (or its ``FaceXModel`` folder) into the arrays of an ARKit rig in mm.

    Reads ``generic_neutral_mesh.obj`` and one OBJ per expression (names from ``vertex_indices.json``'s
    ``expressions`` when present). Returns the keyword arguments of :class:`~esarm.rig.FaceRig`: ``neutral``
    ``[V, 3]``, ``deltas`` ``[52, V, 3]`` (``ARKIT_NAMES`` order), ``faces`` (quads split in two triangles),
    ``regions`` (:func:`~esarm.rig.regions.regions_from_landmarks`), ``landmarks`` and ``source``.

    Args:
        path: the checkout or its ``FaceXModel`` folder.
        landmarks: 68 iBUG landmark vertex ids (default ``ICT_LANDMARKS_68``, from ICT-FaceKit's README).
        face_area_vertices: number of leading vertices forming the face area (default ``ICT_FACE_AREA_VERTICES``,
            9409).
    """
    landmarks = ICT_LANDMARKS_68 if landmarks is None else landmarks
    face_area_vertices = ICT_FACE_AREA_VERTICES if face_area_vertices is None else face_area_vertices
    folder = Path(path)
    if (folder / "FaceXModel").is_dir():
        folder = folder / "FaceXModel"
    neutral_path = folder / "generic_neutral_mesh.obj"
    if not neutral_path.is_file():
        raise FileNotFoundError(
            f"path must be an ICT-FaceKit checkout or its FaceXModel folder, got {path} (no {neutral_path})"
        )
    config_path = folder / "vertex_indices.json"
    if config_path.is_file():
        expressions = list(json.loads(config_path.read_text())["expressions"])
    else:
        expressions = [p.stem for p in sorted(folder.glob("*.obj")) if p.stem != "generic_neutral_mesh"]
    neutral_full, polygons = read_obj(neutral_path, with_faces=True)
    face_area = min(face_area_vertices, len(neutral_full))
    neutral = neutral_full[:face_area]
    landmarks = np.asarray(landmarks, dtype=np.int64)
    if len(landmarks) != 68 or landmarks.max() >= face_area:
        raise ValueError(
            f"landmarks must be 68 vertex ids of the face area (< {face_area}), got {len(landmarks)} ids up to "
            f"{landmarks.max()}"
        )

    deltas = np.zeros((NUM_BLENDSHAPES, face_area, 3), dtype=np.float64)
    missing = []
    targets: dict[str, np.ndarray] = {}
    for i, name in enumerate(ARKIT_NAMES):
        if name == "tongueOut":
            continue  # ICT has no tongue target
        ict_names = ict_name_for(name, expressions)
        files = [folder / f"{n}.obj" for n in ict_names]
        if not ict_names or not all(f.is_file() for f in files):
            missing.append(name)
            continue
        for ict_name, file in zip(ict_names, files):
            if ict_name not in targets:
                target, _ = read_obj(file)
                if len(target) != len(neutral_full):
                    raise ValueError(
                        f"{file} must have the same vertices as generic_neutral_mesh.obj ({len(neutral_full)}), "
                        f"got {len(target)}"
                    )
                targets[ict_name] = target[:face_area] - neutral
            deltas[i] += targets[ict_name]
    if missing:
        raise ValueError(f"ICT-FaceKit folder {folder} lacks targets for ARKit blendshapes {missing}")

    neutral_mm = (neutral * ICT_UNITS_TO_MM).astype(np.float32)
    return {
        "neutral": neutral_mm,
        "deltas": (deltas * ICT_UNITS_TO_MM).astype(np.float32),
        "faces": triangulate([p for p in polygons if max(p) < face_area]),
        "regions": regions_from_landmarks(neutral_mm, landmarks),
        "landmarks": landmarks,
        "source": ICT_SOURCE,
    }


def download_ict_facekit(directory: str | os.PathLike, files: Mapping[str, str] | None = None) -> Path:
    """Download the ICT-FaceKit files the conversion reads, at ``ICT_FACEKIT_COMMIT``, into ``directory``.

    Each file is checked against its pinned sha256 (``files``, default ``ICT_FACEKIT_SHA256``) and written
    atomically; files already there with the right checksum are kept. Writes ``vertex_indices.json`` (the
    expression list) beside them. Returns ``directory``.

    Raises:
        OSError: a download failed or a file's sha256 differs from the pinned one (the file is not kept).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = dict(ICT_FACEKIT_SHA256 if files is None else files)
    todo = [name for name, digest in files.items() if file_sha256(directory / name) != digest]
    if todo:
        logger.info("Downloading %d ICT-FaceKit files (MIT licence) at commit %s", len(todo), ICT_FACEKIT_COMMIT[:7])
    for name in tqdm(todo, desc="ICT-FaceKit", unit="file", disable=not todo):
        fetch_verified(f"{ICT_FACEKIT_RAW_URL}/{name}", directory / name, files[name])
    expressions = sorted(n[: -len(".obj")] for n in files if n != "generic_neutral_mesh.obj")
    atomic_write_text(directory / "vertex_indices.json", json.dumps({"expressions": expressions}))
    return directory

