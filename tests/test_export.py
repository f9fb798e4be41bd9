"""Exports: Live Link Face CSV, JSON and glTF/GLB round trips, orders, and bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from esarm.blendshapes import ARKIT_NAMES, ARKIT_NAMES_ALPHABETICAL, LIVE_LINK_NAMES, reorder
from esarm.export import load_animation, save_animation
from esarm.export.csv import (
    BLEND_SHAPE_COUNT,
    LIVE_LINK_HEADER,
    ROTATION_NAMES,
    format_timecode,
    parse_timecode,
    read_live_link_csv,
    write_live_link_csv,
)
from esarm.export.gltf import read_gltf_animation, write_gltf
from esarm.export.json import read_json, write_json
from esarm.rig import FaceRig


@pytest.fixture
def animation() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, size=(47, 52)).astype(np.float32)  # 47 frames crosses a second boundary at 30 fps


@pytest.fixture
def grid_rig() -> FaceRig:
    """A 4x4-vertex plane, 30 mm between vertices, whose k-th blendshape lifts vertex k % 16 by k+1 mm."""
    xs, ys = np.meshgrid(np.arange(4, dtype=np.float32), np.arange(4, dtype=np.float32))
    neutral = np.stack([xs.ravel(), ys.ravel(), np.zeros(16, np.float32)], axis=1) * 30
    faces = []
    for row in range(3):
        for col in range(3):
            a = row * 4 + col
            faces += [[a, a + 1, a + 5], [a, a + 5, a + 4]]
    deltas = np.zeros((52, 16, 3), np.float32)
    for k in range(52):
        deltas[k, k % 16, 2] = k + 1
    regions = {"lips": np.arange(0, 4), "eye_forehead": np.arange(12, 16)}
    return FaceRig(neutral=neutral, deltas=deltas, faces=np.asarray(faces, np.int64), regions=regions)


# ---- Live Link Face CSV ------------------------------------------------------------------------------------


def test_csv_header_is_live_link_face_layout(tmp_path, animation):
    path = write_live_link_csv(tmp_path / "anim.csv", animation, fps=30)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    assert header[:2] == ["Timecode", "BlendShapeCount"]
    assert header[2:54] == list(LIVE_LINK_NAMES)
    # Apple's order, as the app writes it: JawRight before JawLeft, MouthRight before MouthLeft.
    assert header.index("JawRight") < header.index("JawLeft")
    assert header.index("EyeBlinkLeft") == 2 and header.index("TongueOut") == 53
    assert header[54:] == list(ROTATION_NAMES) == [
        "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
        "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
    ]  # fmt: skip
    assert tuple(header) == LIVE_LINK_HEADER and len(header) == 63
    assert len(rows) == 1 + len(animation)
    assert all(int(r[1]) == BLEND_SHAPE_COUNT == 61 for r in rows[1:])
    assert all(float(v) == 0.0 for r in rows[1:] for v in r[54:])
    assert rows[1][0] == "00:00:00:00.000"
    assert rows[31][0] == "00:00:01:00.000"  # frame 30 at 30 fps
    assert rows[32][0] == "00:00:01:01.000"


def test_timecode_format_and_parse():
    assert format_timecode(0, 30) == "00:00:00:00.000"
    assert format_timecode(29, 30) == "00:00:00:29.000"
    assert format_timecode(3600 * 30 + 61 * 30 + 5, 30) == "01:01:01:05.000"
    assert format_timecode(1, 60, start_seconds=10.0) == "00:00:10:01.000"
    # A non-integer rate counts frames at round(fps), with the sub-frame fraction after the dot.
    assert format_timecode(1, 29.97) == "00:00:00:01.001"
    assert format_timecode(2, 29.97) == "00:00:00:02.002"
    for frame in (0, 7, 59, 60, 1234):
        assert parse_timecode(format_timecode(frame, 60), 60) == pytest.approx(frame / 60, abs=1e-9)
    with pytest.raises(ValueError, match="HH:MM:SS:FF"):
        parse_timecode("12:00", 30)


def test_csv_round_trip(tmp_path, animation):
    path = write_live_link_csv(tmp_path / "anim.csv", animation, fps=30)
    values, fps = read_live_link_csv(path)
    assert fps == 30
    np.testing.assert_allclose(values, animation, atol=1e-7)
    assert values.dtype == np.float32


def test_csv_fps_inferred_at_60(tmp_path, animation):
    frames = np.concatenate([animation, animation])  # 94 frames > 1 s at 60 fps
    _, fps = read_live_link_csv(write_live_link_csv(tmp_path / "a.csv", frames, fps=60))
    assert fps == 60


def test_csv_reader_accepts_alphabetical_camel_case_columns(tmp_path, animation):
    alphabetical = reorder(animation, ARKIT_NAMES, ARKIT_NAMES_ALPHABETICAL)
    path = tmp_path / "emotalk.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Timecode", "BlendShapeCount", *ARKIT_NAMES_ALPHABETICAL, "HeadYaw"])
        for index, frame in enumerate(alphabetical):
            writer.writerow([format_timecode(index, 30), 53, *frame.tolist(), 0.5])
    values, fps = read_live_link_csv(path)
    np.testing.assert_allclose(values, animation, atol=1e-6)
    assert fps == 30


def test_csv_writer_takes_input_in_another_order(tmp_path, animation):
    alphabetical = reorder(animation, ARKIT_NAMES, ARKIT_NAMES_ALPHABETICAL)
    path = write_live_link_csv(tmp_path / "a.csv", alphabetical, fps=30, names=ARKIT_NAMES_ALPHABETICAL)
    np.testing.assert_allclose(read_live_link_csv(path)[0], animation, atol=1e-7)


def test_csv_reader_rejects_missing_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("Timecode,BlendShapeCount,EyeBlinkLeft\n00:00:00:00.000,1,0.5\n")
    with pytest.raises(ValueError, match="missing"):
        read_live_link_csv(path)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.zeros((4, 51)), "shape"),
        (np.zeros((2, 4, 52)), r"\[frames, 52\]"),
        (np.full((4, 52), np.nan), "finite"),
    ],
)
def test_writers_reject_bad_blendshapes(tmp_path, values, message):
    for writer in (write_live_link_csv, write_json):
        with pytest.raises(ValueError, match=message):
            writer(tmp_path / "x", values, fps=30)


# ---- JSON ----------------------------------------------------------------------------------------------------


def test_json_round_trip_with_names_and_fps(tmp_path, animation):
    path = write_json(tmp_path / "anim.json", animation, fps=25, metadata={"emotion": "happy"})
    document = json.loads(path.read_text())
    assert document["names"] == list(ARKIT_NAMES)
    assert document["fps"] == 25 and document["num_frames"] == len(animation)
    assert document["metadata"] == {"emotion": "happy"}
    values, fps = read_json(path)
    assert fps == 25
    np.testing.assert_allclose(values, animation, atol=1e-6)


def test_json_reader_accepts_any_name_order(tmp_path, animation):
    path = tmp_path / "alpha.json"
    alphabetical = reorder(animation, ARKIT_NAMES, ARKIT_NAMES_ALPHABETICAL)
    path.write_text(json.dumps({"names": list(ARKIT_NAMES_ALPHABETICAL), "fps": 30, "frames": alphabetical.tolist()}))
    np.testing.assert_allclose(read_json(path)[0], animation, atol=1e-6)
    (tmp_path / "bad.json").write_text(json.dumps({"fps": 30, "frames": []}))
    with pytest.raises(ValueError, match="'names'"):
        read_json(tmp_path / "bad.json")


# ---- glTF / GLB -----------------------------------------------------------------------------------------------


def test_glb_structure_reloaded_with_pygltflib(tmp_path, animation, grid_rig):
    import pygltflib as gl

    path = write_gltf(tmp_path / "face.glb", animation, fps=30, rig=grid_rig)
    gltf = gl.GLTF2().load(str(path))
    mesh = gltf.meshes[0]
    primitive = mesh.primitives[0]
    assert mesh.extras["targetNames"] == list(ARKIT_NAMES)
    assert len(primitive.targets) == 52 and len(mesh.weights) == 52
    assert gltf.accessors[primitive.attributes.POSITION].count == 16
    assert gltf.accessors[primitive.indices].count == 18 * 3
    for target in primitive.targets:
        accessor = gltf.accessors[target["POSITION"]]
        assert accessor.count == 16 and accessor.min is not None and accessor.max is not None
    (animation_track,) = gltf.animations
    (channel,) = animation_track.channels
    assert channel.target.path == "weights" and channel.target.node == 0
    sampler = animation_track.samplers[channel.sampler]
    assert sampler.interpolation == "LINEAR"
    assert gltf.accessors[sampler.input].count == len(animation)
    assert gltf.accessors[sampler.input].max[0] == pytest.approx((len(animation) - 1) / 30)
    assert gltf.accessors[sampler.output].count == len(animation) * 52
    assert gltf.nodes[gltf.scenes[gltf.scene].nodes[0]].mesh == 0
    # Every buffer view lies inside the binary chunk.
    blob = gltf.binary_blob()
    assert all(v.byteOffset + v.byteLength <= len(blob) for v in gltf.bufferViews)


def test_glb_weights_and_targets_round_trip(tmp_path, animation, grid_rig):
    import pygltflib as gl

    path = write_gltf(tmp_path / "face.glb", animation, fps=30, rig=grid_rig)
    values, fps = read_gltf_animation(path)
    assert fps == pytest.approx(30)
    np.testing.assert_allclose(values, animation, atol=1e-7)
    gltf = gl.GLTF2().load(str(path))
    blob = gltf.binary_blob()
    target = gltf.meshes[0].primitives[0].targets[ARKIT_NAMES.index("jawOpen")]
    view = gltf.bufferViews[gltf.accessors[target["POSITION"]].bufferView]
    deltas = np.frombuffer(blob, np.float32, 16 * 3, view.byteOffset).reshape(16, 3)
    np.testing.assert_allclose(deltas, grid_rig.deltas[ARKIT_NAMES.index("jawOpen")] * 0.001, rtol=1e-6)


def test_gltf_json_with_embedded_buffer(tmp_path, animation, grid_rig):
    path = write_gltf(tmp_path / "face.gltf", animation[:5], fps=24, rig=grid_rig)
    document = json.loads(path.read_text())
    assert document["buffers"][0]["uri"].startswith("data:application/octet-stream;base64,")
    values, fps = read_gltf_animation(path)
    np.testing.assert_allclose(values, animation[:5], atol=1e-7)
    assert fps == pytest.approx(24)


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_written_gltf_reads_back_as_the_same_rig(tmp_path, grid_rig, suffix):
    again = FaceRig.from_gltf(write_gltf(tmp_path / f"face{suffix}", rig=grid_rig))
    np.testing.assert_allclose(again.neutral, grid_rig.neutral, atol=1e-4)
    np.testing.assert_allclose(again.deltas, grid_rig.deltas, atol=1e-4)
    np.testing.assert_array_equal(again.faces, grid_rig.faces)
    for region in ("lips", "eye_forehead"):
        np.testing.assert_array_equal(again.region(region), grid_rig.region(region))


def test_glb_of_the_embedded_rig(tmp_path, rig_path):
    frames = np.zeros((3, 52), np.float32)
    frames[:, ARKIT_NAMES.index("jawOpen")] = [0.0, 0.5, 1.0]
    path = write_gltf(tmp_path / "rig.glb", frames, fps=30, rig=rig_path)
    values, _ = read_gltf_animation(path)
    np.testing.assert_allclose(values, frames)
    import pygltflib as gl

    gltf = gl.GLTF2().load(str(path))
    assert gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION].count == 9409
    assert gltf.accessors[gltf.meshes[0].primitives[0].indices].count == 18460 * 3


def test_gltf_rejects_bad_arguments(tmp_path, grid_rig, animation):
    with pytest.raises(ValueError, match=r"\.glb or \.gltf"):
        write_gltf(tmp_path / "face.obj", animation, rig=grid_rig)
    with pytest.raises(ValueError, match="fps must be positive"):
        write_gltf(tmp_path / "face.glb", animation, fps=0, rig=grid_rig)
    with pytest.raises(TypeError, match="rig must be a FaceRig, a path or None, got object"):
        write_gltf(tmp_path / "face.glb", animation, rig=object())


# ---- dispatch by extension -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".json", ".glb", ".gltf"])
def test_save_and_load_by_extension(tmp_path, animation, grid_rig, suffix):
    path = save_animation(tmp_path / f"anim{suffix}", animation, fps=30, rig=grid_rig)
    values, fps = load_animation(path)
    assert fps == pytest.approx(30)
    np.testing.assert_allclose(values, animation, atol=1e-6)


def test_save_animation_rejects_unknown_extension(tmp_path, animation):
    with pytest.raises(ValueError, match=r"\.csv, \.json"):
        save_animation(tmp_path / "anim.fbx", animation)
    assert not list(tmp_path.iterdir())  # nothing half-written
