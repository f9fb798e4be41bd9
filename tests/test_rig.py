"""esarm.rig: loading (npz, ICT-FaceKit checkout, glTF), the embedded rig, the resolver, the checksum-verified
download, validation, vertices (numpy / torch)."""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import stat
import struct
import tomllib
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from esarm import utils
from esarm.blendshapes import ARKIT_NAMES, ARKIT_NAMES_ALPHABETICAL, BLENDSHAPE_INDEX
from esarm.rig import EMBEDDED_RIG, FaceRig, regions_from_landmarks, resolve_rig
from esarm.rig import ict_facekit as ict_module
from esarm.rig.__main__ import main as rig_main
from esarm.rig.ict_facekit import ict_name_for

# ---------------------------------------------------------------------------------------------------------------------
# synthetic rigs


def make_rig_arrays(num_vertices: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays of a small rig file (esarm npz format, names alphabetical) with a 100 mm wide face."""
    rng = np.random.default_rng(seed)
    neutral = rng.uniform(-50, 50, size=(num_vertices, 3)).astype(np.float32)
    deltas = rng.normal(0, 2, size=(52, num_vertices, 3)).astype(np.float32)
    return {
        "names": np.array(ARKIT_NAMES_ALPHABETICAL),
        "neutral": neutral,
        "deltas": deltas,
        "faces": np.array([[0, 1, 2], [2, 3, 4]], dtype=np.int32),
        "lips": np.arange(0, 10, dtype=np.int32),
        "eye_forehead": np.arange(20, 30, dtype=np.int32),
        "units": np.array("mm"),
    }


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.fixture
def small_rig_file(tmp_path) -> Path:
    return write_npz(tmp_path / "rig.npz", **make_rig_arrays())


# ---------------------------------------------------------------------------------------------------------------------
# npz loading and validation


def test_from_npz_reorders_alphabetical_targets_to_arkit_order(small_rig_file):
    arrays = make_rig_arrays()
    rig = FaceRig.from_npz(small_rig_file)
    for name in ("eyeBlinkLeft", "jawOpen", "tongueOut", "browInnerUp"):
        alphabetical = ARKIT_NAMES_ALPHABETICAL.index(name)
        np.testing.assert_array_equal(rig.deltas[BLENDSHAPE_INDEX[name]], arrays["deltas"][alphabetical])
    assert rig.names == ARKIT_NAMES
    assert rig.num_vertices == 40
    np.testing.assert_array_equal(rig.region("lips"), np.arange(10))


def test_missing_targets_are_listed(tmp_path):
    arrays = make_rig_arrays()
    keep = [i for i, n in enumerate(ARKIT_NAMES_ALPHABETICAL) if n not in ("jawOpen", "mouthClose")]
    arrays["names"] = arrays["names"][keep]
    arrays["deltas"] = arrays["deltas"][keep]
    with pytest.raises(ValueError, match=r"missing \['jawOpen', 'mouthClose'\]"):
        FaceRig.from_npz(write_npz(tmp_path / "rig.npz", **arrays))


def test_nan_delta_names_the_target(tmp_path):
    arrays = make_rig_arrays()
    arrays["deltas"][ARKIT_NAMES_ALPHABETICAL.index("jawOpen"), 3, 1] = np.nan
    with pytest.raises(ValueError, match=r"deltas must be finite.*jawOpen"):
        FaceRig.from_npz(write_npz(tmp_path / "rig.npz", **arrays))


@pytest.mark.parametrize("region", ["lips", "eye_forehead"])
def test_region_ids_out_of_range(tmp_path, region):
    arrays = make_rig_arrays()
    arrays[region] = np.array([1, 2, 40], dtype=np.int32)
    with pytest.raises(ValueError, match=rf"region '{region}' must hold vertex ids in \[0, 40\)"):
        FaceRig.from_npz(write_npz(tmp_path / "rig.npz", **arrays))


def test_missing_region_array(tmp_path):
    arrays = make_rig_arrays()
    del arrays["eye_forehead"]
    with pytest.raises(ValueError, match="eye_forehead"):
        FaceRig.from_npz(write_npz(tmp_path / "rig.npz", **arrays))


def test_metres_are_rejected_with_a_hint_and_units_key_converts(tmp_path):
    arrays = make_rig_arrays()
    arrays["neutral"] = arrays["neutral"] / 1000
    arrays["deltas"] = arrays["deltas"] / 1000
    with pytest.raises(ValueError, match="millimetres.*metres"):
        FaceRig.from_npz(write_npz(tmp_path / "m.npz", **arrays))
    arrays["units"] = np.array("m")
    rig = FaceRig.from_npz(write_npz(tmp_path / "m_units.npz", **arrays))
    np.testing.assert_allclose(rig.neutral, make_rig_arrays()["neutral"], rtol=1e-5)


def test_deltas_in_other_units_than_neutral_are_rejected(tmp_path):
    arrays = make_rig_arrays()
    arrays["deltas"] = arrays["deltas"] * 1000
    with pytest.raises(ValueError, match="same units"):
        FaceRig.from_npz(write_npz(tmp_path / "rig.npz", **arrays))


def test_save_npz_round_trip(tmp_path, small_rig_file):
    rig = FaceRig.from_npz(small_rig_file)
    again = FaceRig.from_npz(rig.save_npz(tmp_path / "out" / "copy.npz"))
    np.testing.assert_array_equal(again.deltas, rig.deltas)
    np.testing.assert_array_equal(again.neutral, rig.neutral)
    for name in ("lips", "eye_forehead"):
        np.testing.assert_array_equal(again.region(name), rig.region(name))
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left behind


# ---------------------------------------------------------------------------------------------------------------------
# vertices


def test_vertices_numpy_broadcasts_and_is_linear(small_rig_file):
    rig = FaceRig.from_npz(small_rig_file)
    weights = np.random.default_rng(1).uniform(0, 1, size=(2, 3, 52)).astype(np.float32)
    vertices = rig.vertices(weights)
    assert vertices.shape == (2, 3, 40, 3)
    expected = rig.neutral + np.einsum("k,kvc->vc", weights[1, 2].astype(np.float64), rig.deltas.astype(np.float64))
    np.testing.assert_allclose(vertices[1, 2], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rig.vertices(np.zeros(52)), rig.neutral)
    lips = rig.region("lips")
    np.testing.assert_allclose(rig.vertices(weights, indices=lips), vertices[..., lips, :], rtol=1e-5, atol=1e-5)


def test_vertices_torch_matches_numpy_and_has_gradients(small_rig_file):
    rig = FaceRig.from_npz(small_rig_file)
    weights = torch.rand(4, 52, requires_grad=True)
    vertices = rig.vertices(weights)
    assert isinstance(vertices, torch.Tensor) and vertices.shape == (4, 40, 3)
    np.testing.assert_allclose(vertices.detach().numpy(), rig.vertices(weights.detach().numpy()), rtol=1e-5, atol=1e-4)
    vertices.sum().backward()
    assert weights.grad is not None and torch.isfinite(weights.grad).all()


def test_vertices_rejects_wrong_width(small_rig_file):
    rig = FaceRig.from_npz(small_rig_file)
    with pytest.raises(ValueError, match=r"\[\.\.\., 52\]"):
        rig.vertices(np.zeros((3, 51)))
    with pytest.raises(ValueError, match=r"\[\.\.\., 52\]"):
        rig.vertices(torch.zeros(3, 50))


def test_quantized_npz_is_within_half_a_step_of_each_target(tmp_path, small_rig_file):
    rig = FaceRig.from_npz(small_rig_file)
    path = rig.save_npz(tmp_path / "compact.npz", quantize=True)
    with np.load(path) as data:
        assert data["deltas"].dtype == np.int16 and data["deltas_scale"].shape == (52,)
    again = FaceRig.from_npz(path)
    half_step = np.abs(rig.deltas).reshape(52, -1).max(axis=1) / 65534
    error = np.abs(again.deltas - rig.deltas).reshape(52, -1).max(axis=1)
    # half a step, plus float32 rounding of the product (about 1 % of a step on this 8 mm rig)
    assert (error <= half_step * 1.05).all() and error.max() > 0
    np.testing.assert_array_equal(again.neutral, rig.neutral)


def test_integer_deltas_need_their_scale(tmp_path):
    arrays = make_rig_arrays()
    arrays["deltas"] = np.round(arrays["deltas"]).astype(np.int16)
    with pytest.raises(ValueError, match=r"deltas_scale of shape \[52\]"):
        FaceRig.from_npz(write_npz(tmp_path / "rig.npz", **arrays))


# ---------------------------------------------------------------------------------------------------------------------
# the embedded ICT-FaceKit rig (the reference figures of ICT-FaceKit's conversion)


def test_embedded_rig_matches_the_reference_figures(rig):
    assert rig.num_vertices == 9409 and len(rig.faces) == 18460
    assert len(rig.region("lips")) == 1046 and len(rig.region("eye_forehead")) == 2301
    assert len(rig.landmarks) == 68
    jaw = np.zeros(52)
    jaw[BLENDSHAPE_INDEX["jawOpen"]] = 1.0
    motion = np.linalg.norm(rig.vertices(jaw) - rig.neutral, axis=-1)
    assert 35 < motion[rig.region("lips")].max() < 45
    assert motion[rig.region("eye_forehead")].max() < 1.0
    blink = np.zeros(52)
    blink[BLENDSHAPE_INDEX["eyeBlinkLeft"]] = 1.0
    assert np.linalg.norm(rig.offsets(blink), axis=-1)[rig.region("lips")].max() < 0.01  # mm
    np.testing.assert_array_equal(rig.deltas[BLENDSHAPE_INDEX["tongueOut"]], 0)
    assert "ICT-FaceKit" in rig.source and "MIT" in rig.source


def test_embedded_rig_is_compact_and_ships_its_licence():
    assert EMBEDDED_RIG.stat().st_size < 2_000_000
    with np.load(EMBEDDED_RIG) as data:
        assert data["deltas"].dtype == np.int16
    licence = (EMBEDDED_RIG.parent / "LICENSE-ICT-FaceKit.txt").read_text()
    assert "MIT License" in licence and "USC Institute for Creative Technologies" in licence


def test_embedded_rig_and_licence_are_package_data():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["esarm.rig"]
    for path in (EMBEDDED_RIG, EMBEDDED_RIG.parent / "LICENSE-ICT-FaceKit.txt"):
        relative = path.relative_to(EMBEDDED_RIG.parents[1]).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), f"{relative} is not in esarm.rig's package-data"


def test_landmark_regions_reproduce_the_embedded_regions(rig):
    regions = regions_from_landmarks(rig.neutral, rig.landmarks)
    for name in ("lips", "eye_forehead"):
        np.testing.assert_array_equal(regions[name], rig.region(name))


# ---------------------------------------------------------------------------------------------------------------------
# ICT-FaceKit conversion on a tiny ICT-like tree


ICT_EXPRESSIONS = [
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R", "cheekPuff_L",
    "cheekPuff_R", "cheekSquint_L", "cheekSquint_R", "eyeBlink_L", "eyeBlink_R", "eyeLookDown_L", "eyeLookDown_R",
    "eyeLookIn_L", "eyeLookIn_R", "eyeLookOut_L", "eyeLookOut_R", "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L",
    "eyeSquint_R", "eyeWide_L", "eyeWide_R", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimple_L", "mouthDimple_R", "mouthFrown_L", "mouthFrown_R", "mouthFunnel", "mouthLeft", "mouthLowerDown_L",
    "mouthLowerDown_R", "mouthPress_L", "mouthPress_R", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmile_L", "mouthSmile_R", "mouthStretch_L",
    "mouthStretch_R", "mouthUpperUp_L", "mouthUpperUp_R", "noseSneer_L", "noseSneer_R",
]  # fmt: skip


def _canonical_landmarks_cm() -> np.ndarray:
    """68 iBUG points on a 14 x 18 cm face (y up): jaw, brows, nose, eyes, mouth."""
    jaw = [(7 * np.cos(a), -1 + 8 * np.sin(a)) for a in np.linspace(np.pi * 1.05, np.pi * 1.95, 17)]
    brows = [(x, 5.0) for x in np.linspace(-6, -2, 5)] + [(x, 5.0) for x in np.linspace(2, 6, 5)]
    nose = [(0.0, y) for y in np.linspace(3, 0, 4)] + [(x, -1.0) for x in np.linspace(-1, 1, 5)]
    eyes = [(cx + np.cos(a), 3 + 0.5 * np.sin(a)) for cx in (-3.5, 3.5) for a in np.linspace(0, 2 * np.pi, 6, False)]
    mouth = [(2.5 * np.cos(a), -5 + np.sin(a)) for a in np.linspace(0, 2 * np.pi, 12, False)]
    mouth += [(1.5 * np.cos(a), -5 + 0.4 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 8, False)]
    return np.array(jaw + brows + nose + eyes + mouth)


def _write_obj(path: Path, vertices: np.ndarray, quads: list[tuple[int, ...]] | None = None) -> None:
    lines = ["# synthetic ICT-like file", "mtllib ICTFaceModelMaterial.mtl"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += ["vt 0.5 0.5"]
    if quads:
        lines += ["f " + " ".join(f"{i + 1}/1" for i in q) for q in quads]
    path.write_text("\n".join(lines) + "\n")


def _expression_delta(name: str, vertices: np.ndarray) -> np.ndarray:
    """Distinct, checkable motion (cm) for each ICT expression."""
    delta = np.zeros_like(vertices)
    index = ICT_EXPRESSIONS.index(name)
    delta[(index * 7) % 200] = (0.0, 0.1 * (index + 1), 0.0)
    if name == "jawOpen":
        delta[vertices[:, 1] < -3] += (0.0, -1.0, 0.2)
    return delta


@pytest.fixture
def ict_tree(tmp_path) -> dict:
    """A tiny ICT-FaceKit-like checkout: FaceXModel/ with OBJs in cm and vertex_indices.json."""
    folder = tmp_path / "ICT-FaceKit" / "FaceXModel"
    folder.mkdir(parents=True)
    xs, ys = np.arange(-7.0, 7.5, 1.0), np.arange(-9.0, 9.5, 1.0)
    grid_x, grid_y = np.meshgrid(xs, ys)
    face = np.stack([grid_x.ravel(), grid_y.ravel(), 10 - 0.05 * grid_x.ravel() ** 2], axis=1)
    head = face[:12] + (0.0, 0.0, -15.0)  # vertices after the face area (like ICT's head and neck)
    vertices = np.concatenate([face, head])
    width = len(xs)
    quads = [
        (r * width + c, r * width + c + 1, (r + 1) * width + c + 1, (r + 1) * width + c)
        for r in range(len(ys) - 1)
        for c in range(width - 1)
    ]
    quads.append((0, 1, len(face), len(face) + 1))  # touches the head: not part of the face area
    _write_obj(folder / "generic_neutral_mesh.obj", vertices, quads)
    for name in ICT_EXPRESSIONS:
        _write_obj(folder / f"{name}.obj", vertices + _expression_delta(name, vertices))
    (folder / "vertex_indices.json").write_text(json.dumps({"expressions": ICT_EXPRESSIONS}))
    points = _canonical_landmarks_cm()
    landmarks = np.argmin(((face[None, :, :2] - points[:, None]) ** 2).sum(-1), axis=1)
    return {
        "root": folder.parent,
        "folder": folder,
        "face": face,
        "vertices": vertices,
        "num_face_quads": len(quads) - 1,
        "landmarks": landmarks,
    }


def test_ict_name_mapping():
    assert ict_name_for("eyeBlinkLeft", ICT_EXPRESSIONS) == ["eyeBlink_L"]
    assert ict_name_for("mouthSmileRight", ICT_EXPRESSIONS) == ["mouthSmile_R"]
    assert ict_name_for("jawLeft", ICT_EXPRESSIONS) == ["jawLeft"]
    assert ict_name_for("browInnerUp", ICT_EXPRESSIONS) == ["browInnerUp_L", "browInnerUp_R"]
    assert ict_name_for("cheekPuff", ICT_EXPRESSIONS) == ["cheekPuff_L", "cheekPuff_R"]
    assert ict_name_for("tongueOut", ICT_EXPRESSIONS) == []
    assert all(ict_name_for(n, ICT_EXPRESSIONS) for n in ARKIT_NAMES if n != "tongueOut")


def test_from_ict_facekit_converts_names_units_faces_and_regions(ict_tree):
    face, vertices = ict_tree["face"], ict_tree["vertices"]
    rig = FaceRig.from_ict_facekit(ict_tree["root"], landmarks=ict_tree["landmarks"], face_area_vertices=len(face))
    assert rig.num_vertices == len(face)
    np.testing.assert_allclose(rig.neutral, face * 10, atol=1e-4)  # cm -> mm
    assert len(rig.faces) == 2 * ict_tree["num_face_quads"] and rig.faces.max() < len(face)

    def ict_delta_mm(name):
        return _expression_delta(name, vertices)[: len(face)] * 10

    np.testing.assert_allclose(rig.deltas[BLENDSHAPE_INDEX["eyeBlinkLeft"]], ict_delta_mm("eyeBlink_L"), atol=1e-4)
    np.testing.assert_allclose(rig.deltas[BLENDSHAPE_INDEX["jawLeft"]], ict_delta_mm("jawLeft"), atol=1e-4)
    np.testing.assert_allclose(rig.deltas[BLENDSHAPE_INDEX["jawOpen"]], ict_delta_mm("jawOpen"), atol=1e-4)
    np.testing.assert_allclose(
        rig.deltas[BLENDSHAPE_INDEX["browInnerUp"]],
        ict_delta_mm("browInnerUp_L") + ict_delta_mm("browInnerUp_R"),
        atol=1e-4,
    )
    np.testing.assert_array_equal(rig.deltas[BLENDSHAPE_INDEX["tongueOut"]], 0)

    lips, eyes = set(rig.region("lips").tolist()), set(rig.region("eye_forehead").tolist())
    landmarks = ict_tree["landmarks"]
    assert set(landmarks[48:68].tolist()) <= lips
    assert set(landmarks[36:48].tolist()) | set(landmarks[17:27].tolist()) <= eyes
    assert not lips & eyes
    top_row = {i for i, (x, y, _) in enumerate(face) if y == 9.0 and abs(x) <= 6}
    assert top_row <= eyes  # the forehead above the brows
    assert "MIT" in rig.source


def test_from_ict_facekit_lists_missing_targets(ict_tree):
    (ict_tree["folder"] / "mouthSmile_L.obj").unlink()
    with pytest.raises(ValueError, match=r"\['mouthSmileLeft'\]"):
        FaceRig.from_ict_facekit(
            ict_tree["folder"], landmarks=ict_tree["landmarks"], face_area_vertices=len(ict_tree["face"])
        )


def test_from_ict_facekit_needs_the_neutral_mesh(tmp_path):
    with pytest.raises(FileNotFoundError, match="generic_neutral_mesh.obj"):
        FaceRig.from_ict_facekit(tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# glTF


def write_glb(path: Path, neutral_m: np.ndarray, targets_m: dict[str, np.ndarray], faces: np.ndarray, scale=None):
    """A minimal GLB: one mesh, one triangle primitive, morph targets named in mesh.extras.targetNames."""
    import pygltflib

    blob = bytearray()
    views, accessors = [], []

    def add(array: np.ndarray, component: int, kind: str, target: int) -> int:
        data = array.tobytes()
        views.append(pygltflib.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target))
        blob.extend(data + b"\0" * (-len(data) % 4))
        extra = {"min": array.min(0).tolist(), "max": array.max(0).tolist()} if kind == "VEC3" else {}
        accessors.append(
            pygltflib.Accessor(bufferView=len(views) - 1, componentType=component, count=len(array), type=kind, **extra)
        )
        return len(accessors) - 1

    position = add(neutral_m.astype(np.float32), pygltflib.FLOAT, "VEC3", pygltflib.ARRAY_BUFFER)
    indices = add(faces.astype(np.uint32).reshape(-1), pygltflib.UNSIGNED_INT, "SCALAR", pygltflib.ELEMENT_ARRAY_BUFFER)
    names = list(targets_m)
    morphs = [{"POSITION": add(targets_m[n].astype(np.float32), pygltflib.FLOAT, "VEC3", pygltflib.ARRAY_BUFFER)}
              for n in names]  # fmt: skip
    primitive = pygltflib.Primitive(attributes=pygltflib.Attributes(POSITION=position), indices=indices, targets=morphs)
    gltf = pygltflib.GLTF2(
        scenes=[pygltflib.Scene(nodes=[0])],
        nodes=[pygltflib.Node(mesh=0, scale=scale)],
        meshes=[pygltflib.Mesh(name="Head", primitives=[primitive], extras={"targetNames": names})],
        accessors=accessors,
        bufferViews=views,
        buffers=[pygltflib.Buffer(byteLength=len(blob))],
    )
    gltf.set_binary_blob(bytes(blob))
    gltf.save_binary(str(path))
    return path


def _gltf_head(seed: int = 0, names=ARKIT_NAMES):
    rng = np.random.default_rng(seed)
    neutral = rng.uniform(-0.05, 0.05, size=(30, 3))  # metres
    targets = {n: rng.normal(0, 0.002, size=(30, 3)) for n in names}
    faces = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    return neutral, targets, faces


def test_from_gltf_reads_arkit_targets_in_millimetres(tmp_path):
    neutral, targets, faces = _gltf_head()
    names = [n[0].upper() + n[1:] for n in ARKIT_NAMES if n != "tongueOut"][::-1]  # Live Link case, any order
    targets = {n: targets[n[0].lower() + n[1:]] for n in names}
    path = write_glb(tmp_path / "head.glb", neutral, targets, faces)
    regions = {"lips": [0, 1, 2], "eye_forehead": [10, 11]}
    rig = FaceRig.from_gltf(path, regions=regions)
    np.testing.assert_allclose(rig.neutral, neutral * 1000, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(rig.deltas[BLENDSHAPE_INDEX["jawOpen"]], targets["JawOpen"] * 1000, atol=1e-3)
    np.testing.assert_array_equal(rig.deltas[BLENDSHAPE_INDEX["tongueOut"]], 0)  # absent: zero
    np.testing.assert_array_equal(rig.faces, faces)
    np.testing.assert_array_equal(rig.region("lips"), [0, 1, 2])


def test_from_gltf_applies_node_scale_and_derives_regions(tmp_path):
    neutral, targets, faces = _gltf_head()
    path = write_glb(tmp_path / "head.glb", neutral / 2, {n: t / 2 for n, t in targets.items()}, faces, scale=[2, 2, 2])
    rig = FaceRig.from_gltf(path)
    np.testing.assert_allclose(rig.neutral, neutral * 1000, rtol=1e-5, atol=1e-3)
    assert len(rig.region("lips")) > 0 and len(rig.region("eye_forehead")) > 0


def test_from_gltf_lists_missing_targets(tmp_path):
    neutral, targets, faces = _gltf_head(names=[n for n in ARKIT_NAMES if n not in ("jawOpen", "eyeBlinkLeft")])
    path = write_glb(tmp_path / "head.glb", neutral, targets, faces)
    with pytest.raises(ValueError, match=r"missing \['eyeBlinkLeft', 'jawOpen'\]"):
        FaceRig.from_gltf(path)


def test_glb_file_is_binary_gltf(tmp_path):
    neutral, targets, faces = _gltf_head()
    path = write_glb(tmp_path / "head.glb", neutral, targets, faces)
    magic, version = struct.unpack("<4sI", path.read_bytes()[:8])
    assert magic == b"glTF" and version == 2
    assert isinstance(FaceRig.from_path(path), FaceRig)


# ---------------------------------------------------------------------------------------------------------------------
# the resolver: explicit path > $ESARM_RIG > the user cache > (download when asked) > the embedded rig


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for variable in ("ESARM_RIG", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("ESARM_HOME", str(tmp_path / "esarm_home"))
    return tmp_path / "esarm_home" / "rigs"


def test_nothing_configured_gives_the_embedded_rig(clean_env):
    rig = FaceRig.default()
    assert rig.num_vertices == 9409 and "ICT-FaceKit" in rig.source
    assert not clean_env.exists()  # nothing downloaded or written


def test_resolver_order(monkeypatch, clean_env, tmp_path, small_rig_file):
    clean_env.mkdir(parents=True)
    cached = write_npz(clean_env / ict_module.ICT_RIG_FILENAME, **make_rig_arrays(num_vertices=30))
    assert resolve_rig().num_vertices == 30  # the cache beats the embedded rig
    monkeypatch.setenv("ESARM_RIG", str(small_rig_file))
    assert resolve_rig().num_vertices == 40  # $ESARM_RIG beats the cache
    explicit = write_npz(tmp_path / "explicit.npz", **make_rig_arrays(num_vertices=32))
    assert resolve_rig(explicit).num_vertices == 32  # an explicit path beats $ESARM_RIG
    assert resolve_rig(str(cached)).num_vertices == 30
    rig = FaceRig.from_npz(small_rig_file)
    assert resolve_rig(rig) is rig


def test_resolver_rejects_missing_paths_and_other_types(monkeypatch, clean_env, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        resolve_rig(tmp_path / "nope.npz")
    with pytest.raises(TypeError, match="rig must be a FaceRig, a path or None, got int"):
        resolve_rig(3)
    monkeypatch.setenv("ESARM_RIG", str(tmp_path / "gone.npz"))
    with pytest.raises(FileNotFoundError, match=r"ESARM_RIG must name .*gone.npz"):
        FaceRig.default()


def test_rig_info_command_reports_the_rig(capsys, clean_env):
    assert rig_main(["info", "--cache-dir", str(clean_env)]) == 0
    assert "FaceRig(vertices=9409" in capsys.readouterr().out


def _serve(monkeypatch, folder: Path) -> list[str]:
    """Replace only the network layer: ``urlopen`` answers with the bytes of ``folder``'s file of that name."""
    fetched = []

    def fake_urlopen(url, timeout):
        fetched.append(url)
        path = folder / url.rsplit("/", 1)[1]
        if not path.is_file():
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return io.BytesIO(path.read_bytes())

    monkeypatch.setattr(utils, "urlopen", fake_urlopen)
    return fetched


def _checksums(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.obj"))}


def test_download_keeps_files_whose_sha256_matches(monkeypatch, tmp_path, ict_tree):
    fetched = _serve(monkeypatch, ict_tree["folder"])
    files = _checksums(ict_tree["folder"])
    target = ict_module.download_ict_facekit(tmp_path / "download", files=files)
    assert len(fetched) == len(files) and all(ict_module.ICT_FACEKIT_COMMIT in url for url in fetched)
    for name in files:
        assert (target / name).read_bytes() == (ict_tree["folder"] / name).read_bytes()
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o644
    fetched.clear()
    ict_module.download_ict_facekit(tmp_path / "download", files=files)
    assert not fetched  # files with the right checksum are kept, not fetched again


def test_download_rejects_a_wrong_sha256(monkeypatch, tmp_path, ict_tree):
    _serve(monkeypatch, ict_tree["folder"])
    files = {**_checksums(ict_tree["folder"]), "jawOpen.obj": "0" * 64}
    with pytest.raises(OSError, match="checksum mismatch for .*jawOpen.obj: expected sha256 0{64}, got [0-9a-f]{64}"):
        ict_module.download_ict_facekit(tmp_path / "download", files=files)
    assert not (tmp_path / "download" / "jawOpen.obj").exists()
    assert not list((tmp_path / "download").glob(".*"))  # no temporary file left behind


def test_resolver_downloads_converts_and_caches_only_when_asked(monkeypatch, clean_env, ict_tree):
    fetched = _serve(monkeypatch, ict_tree["folder"])
    monkeypatch.setattr(ict_module, "ICT_FACEKIT_SHA256", _checksums(ict_tree["folder"]))
    monkeypatch.setattr(ict_module, "ICT_LANDMARKS_68", tuple(int(i) for i in ict_tree["landmarks"]))
    monkeypatch.setattr(ict_module, "ICT_FACE_AREA_VERTICES", len(ict_tree["face"]))
    assert FaceRig.default().num_vertices == 9409 and not fetched  # no download unless asked
    rig = FaceRig.default(download=True)
    assert rig.num_vertices == len(ict_tree["face"]) and len(fetched) == len(ict_module.ICT_FACEKIT_SHA256)
    cached = clean_env / ict_module.ICT_RIG_FILENAME
    assert stat.S_IMODE(cached.stat().st_mode) == 0o644
    fetched.clear()
    again = FaceRig.default()  # from the cache now, download or not
    assert not fetched
    np.testing.assert_array_equal(again.deltas, rig.deltas)


def test_failed_download_is_an_error_when_asked(monkeypatch, clean_env, tmp_path):
    _serve(monkeypatch, tmp_path / "empty")
    with pytest.raises(OSError, match="404"):
        FaceRig.default(download=True)
    assert not (clean_env / ict_module.ICT_RIG_FILENAME).exists()
