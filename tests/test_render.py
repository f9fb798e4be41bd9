"""Software rasteriser, MP4 (with audio) / GIF writers, side by side and curves strip."""

from __future__ import annotations

import numpy as np
import pytest

from esarm.blendshapes import BLENDSHAPE_INDEX
from esarm.export.render import FaceRenderer, render_frame, render_video

FPS = 30


@pytest.fixture(scope="module")
def renderer(rig):
    return FaceRenderer(rig, height=128)


def weights(**values: float) -> np.ndarray:
    w = np.zeros(52, np.float32)
    for name, value in values.items():
        w[BLENDSHAPE_INDEX[name]] = value
    return w


def speech_like(frames: int) -> np.ndarray:
    animation = np.zeros((frames, 52), np.float32)
    animation[:, BLENDSHAPE_INDEX["jawOpen"]] = 0.5 + 0.5 * np.sin(np.arange(frames) / 2.0)
    return animation


def test_render_frame_image(rig_path):
    image = render_frame(str(rig_path), weights(), height=96)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[0] == 96 and image.shape[2] == 3
    assert image.shape[1] % 2 == 0
    corner, centre = image[0, 0], image[48, image.shape[1] // 2]
    assert not np.array_equal(corner, centre)  # the face covers the centre, background the corner
    face_fraction = (np.abs(image.astype(int) - corner.astype(int)).sum(axis=2) > 0).mean()
    assert 0.3 < face_fraction < 0.95


def test_blendshapes_move_the_right_part_of_the_face(renderer):
    neutral = renderer.render(weights()).astype(int)
    half = renderer.height // 2
    jaw = np.abs(renderer.render(weights(jawOpen=1.0)).astype(int) - neutral).sum(axis=2) > 30
    blink = np.abs(renderer.render(weights(eyeBlinkLeft=1.0)).astype(int) - neutral).sum(axis=2) > 30
    assert jaw[half:].sum() > 50 and jaw[half:].sum() > 5 * jaw[: int(0.35 * renderer.height)].sum()
    assert blink.sum() > 3 and blink[: int(0.55 * renderer.height)].sum() == blink.sum()
    # eyeBlinkLeft is the subject's left eye: on the right of a front view.
    assert np.flatnonzero(blink.any(axis=0)).min() > renderer.width // 2


def test_render_is_deterministic_and_shading_modes_differ(rig_path, renderer):
    w = weights(mouthSmileLeft=0.7)
    np.testing.assert_array_equal(renderer.render(w), renderer.render(w))
    flat = FaceRenderer(str(rig_path), height=128, shading="flat").render(w)
    assert flat.shape == renderer.render(w).shape and not np.array_equal(flat, renderer.render(w))


def test_renderer_rejects_bad_arguments(renderer, rig_path):
    with pytest.raises(ValueError, match=r"shape \[52\]"):
        renderer.render(np.zeros(51))
    with pytest.raises(ValueError, match="shading"):
        FaceRenderer(str(rig_path), shading="phong")


def _read_mp4(path):
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        info = {
            "video_codec": video.codec_context.name,
            "size": (video.codec_context.height, video.codec_context.width),
            "video_seconds": float(video.duration * video.time_base),
            "audio_seconds": float(audio.duration * audio.time_base) if audio else None,
            "audio_codec": audio.codec_context.name if audio else None,
        }
    with av.open(str(path)) as container:
        info["frames"] = sum(1 for _ in container.decode(video=0))
    return info


@pytest.mark.parametrize("audio_seconds", [1.0, 0.8, 1.4])
def test_mp4_has_one_frame_per_animation_frame_and_audio_of_the_same_length(tmp_path, renderer, audio_seconds):
    frames = 30  # 1.0 s
    audio = 0.1 * np.sin(2 * np.pi * 220 * np.arange(int(audio_seconds * 16000)) / 16000)
    path = render_video(
        tmp_path / "a.mp4", speech_like(frames), FPS, audio=audio, sampling_rate=16000, renderer=renderer
    )
    info = _read_mp4(path)
    assert info["frames"] == frames
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert info["video_seconds"] == pytest.approx(frames / FPS, abs=1e-6)
    assert abs(info["audio_seconds"] - info["video_seconds"]) <= 1 / FPS


def test_mp4_audio_at_an_unusual_rate_and_stereo(tmp_path, renderer):
    audio = np.zeros((2, 22_050), np.float32)  # 1 s stereo at 22.05 kHz
    path = render_video(tmp_path / "s.mp4", speech_like(15), 15, audio=audio, sampling_rate=22_050, renderer=renderer)
    info = _read_mp4(path)
    assert info["frames"] == 15 and abs(info["audio_seconds"] - 1.0) <= 1 / 15


def test_side_by_side_with_labels_and_curves(tmp_path, renderer):
    a, b = speech_like(12), np.zeros((10, 52), np.float32)
    path = render_video(tmp_path / "cmp.mp4", [a, b], FPS, labels=["STA", "RL"], curves=True, renderer=renderer)
    info = _read_mp4(path)
    assert info["frames"] == 12  # the shorter animation holds its last frame
    assert info["size"][1] == 2 * renderer.width and info["size"][0] > renderer.height  # strip under the faces
    assert info["audio_seconds"] is None


def test_gif(tmp_path, renderer):
    from PIL import Image

    path = render_video(tmp_path / "a.gif", speech_like(9), FPS, renderer=renderer)
    with Image.open(path) as gif:
        assert gif.n_frames == 9 and gif.size == (renderer.width, renderer.height)


def test_render_video_rejects_bad_input(tmp_path, renderer):
    with pytest.raises(ValueError, match=r"\.mp4 or \.gif"):
        render_video(tmp_path / "a.avi", speech_like(3), renderer=renderer)
    with pytest.raises(ValueError, match="labels"):
        render_video(tmp_path / "a.mp4", [speech_like(3)] * 2, labels=["one"], renderer=renderer)
    with pytest.raises(ValueError, match="frames > 0"):
        render_video(tmp_path / "a.mp4", np.zeros((0, 52)), renderer=renderer)
    assert not list(tmp_path.iterdir())
