"""Headless previews of blendshape animations: a numpy software rasteriser of the face rig (orthographic front
view, z-buffer, Gouraud or flat Lambert shading), MP4 (H.264 + AAC through PyAV) and GIF writers, side-by-side
comparisons with labels, and an optional strip of blendshape curves (matplotlib, drawn once per video).

- :func:`render_frame` ``(rig, weights [52]) -> uint8 [H, W, 3]``: one still.
- :class:`FaceRenderer`: the same with the per-rig set-up cached (use it for many frames).
- :func:`render_video`: one or more animations side by side -> .mp4 (with the audio muxed in) or .gif.

The video has exactly one frame per animation frame at the animation's fps, and the audio is trimmed or
zero-padded to ``frames / fps`` seconds, so picture and sound have the same duration (to within the AAC
frame granularity, well under one video frame).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from esarm.blendshapes import ARKIT_NAMES, BLENDSHAPE_INDEX, validate_blendshapes
from esarm.rig import FaceRig, resolve_rig
from esarm.utils import atomic_write

logger = logging.getLogger(__name__)

BACKGROUND = (30, 32, 38)  # RGB
SKIN = (0.86, 0.70, 0.60)  # albedo, RGB in [0, 1]
LIGHT_DIRECTION = (0.35, 0.45, 1.0)  # towards the light, camera space (x right, y up, z towards the viewer)
AMBIENT = 0.22
DEFAULT_CURVES = ("jawOpen", "mouthClose", "mouthSmileLeft", "mouthFunnel", "browInnerUp", "eyeBlinkLeft")
AAC_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
_DEPTH_BITS = 20  # z-buffer key: quantised depth (20 bits) above the sample index (32 bits)


class FaceRenderer:
    """Software rasteriser of a blendshape rig, front orthographic view fitted to the neutral face.

    Args:
        rig: a :class:`~esarm.rig.FaceRig`, a path to one, or ``None`` (:func:`esarm.rig.resolve_rig`).
        height: image height in pixels; the width follows the face's aspect ratio (both even, for H.264).
        shading: ``"gouraud"`` (smooth, per-vertex normals) or ``"flat"`` (per-triangle normals).
        margin: empty border around the neutral face, as a fraction of its size.
    """

    def __init__(self, rig: FaceRig | str | os.PathLike | None = None, height: int = 512, shading: str = "gouraud", margin: float = 0.08):
        if shading not in ("gouraud", "flat"):
            raise ValueError(f"shading must be 'gouraud' or 'flat', got {shading!r}")
        if height < 16:
            raise ValueError(f"height must be at least 16 pixels, got {height}")
        from scipy import sparse

        face_rig = resolve_rig(rig)
        self.neutral, self.deltas, self.faces = face_rig.neutral, face_rig.deltas, face_rig.faces
        self.shading = shading
        self._deltas_flat = self.deltas.reshape(len(ARKIT_NAMES), -1)  # [52, V*3]
        low, high = self.neutral.min(axis=0), self.neutral.max(axis=0)
        extent = high - low
        low, high = low - margin * extent, high + margin * extent
        self.scale = (height - 1) / float(high[1] - low[1])  # pixels per mm
        width = int(round((high[0] - low[0]) * self.scale))
        self.height, self.width = int(height) + height % 2, width + width % 2
        self._origin = np.array([low[0], high[1]], dtype=np.float32)  # mm at pixel (0, 0)
        self._depth_range = (float(low[2] - extent[2]), float(high[2] + extent[2]))
        # Vertex normal = sum of the area-weighted normals of the triangles around it: one sparse product.
        num_vertices, num_faces = len(self.neutral), len(self.faces)
        rows = self.faces.reshape(-1)
        cols = np.repeat(np.arange(num_faces), 3)
        self._vertex_faces = sparse.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(num_vertices, num_faces)
        )
        light = np.asarray(LIGHT_DIRECTION, np.float32)
        self._light = light / np.linalg.norm(light)
        self._albedo = np.asarray(SKIN, np.float32)
        self._background = np.asarray(BACKGROUND, np.uint8)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the rendered images in pixels."""
        return self.height, self.width

    def vertices(self, weights: np.ndarray) -> np.ndarray:
        """Deformed vertices [V, 3] mm for one frame of weights [52] (ARKit order)."""
        weights = np.asarray(weights, np.float32)
        active = np.flatnonzero(weights)  # most coefficients are ~0 in speech: skip their deltas
        offsets = weights[active] @ self._deltas_flat[active]
        return self.neutral + offsets.reshape(self.neutral.shape)

    def render(self, weights: np.ndarray) -> np.ndarray:
        """Render one frame of weights [52] (ARKit order) -> uint8 RGB image [H, W, 3]."""
        weights = np.asarray(weights, np.float32)
        if weights.shape != (len(ARKIT_NAMES),):
            raise ValueError(f"weights must have shape [52], got shape {weights.shape}")
        return self.render_vertices(self.vertices(weights))

    def _lighting(self, vertices: np.ndarray) -> np.ndarray:
        """Lambert light in [AMBIENT, 1] of the mesh posed at ``vertices`` [V, 3]: per vertex ``[V]`` with gouraud
        shading (area-weighted face normals averaged at each vertex), else per face ``[F]``."""
        corners = vertices[self.faces]  # [F, 3, 3]
        face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # area-weighted
        if self.shading == "gouraud":
            face_normals = self._vertex_faces @ face_normals  # [V, 3]
        unit = face_normals / (np.linalg.norm(face_normals, axis=1, keepdims=True) + 1e-12)
        return AMBIENT + (1 - AMBIENT) * np.clip(unit @ self._light, 0.0, 1.0)

    def render_vertices(self, vertices: np.ndarray) -> np.ndarray:
        """Rasterise the rig's triangles with the given vertex positions [V, 3] mm -> uint8 [H, W, 3]."""
        height, width = self.height, self.width
        faces = self.faces
        # Screen space: x right, y down, pixel centres at integer coordinates.
        screen_x = (vertices[:, 0] - self._origin[0]) * self.scale
        screen_y = (self._origin[1] - vertices[:, 1]) * self.scale
        depth = vertices[:, 2]

        # per vertex (gouraud) or per face (flat)
        light_values = self._lighting(vertices)

        x0, x1, x2 = screen_x[faces[:, 0]], screen_x[faces[:, 1]], screen_x[faces[:, 2]]
        y0, y1, y2 = screen_y[faces[:, 0]], screen_y[faces[:, 1]], screen_y[faces[:, 2]]
        x_min = np.clip(np.ceil(np.minimum(np.minimum(x0, x1), x2)), 0, width).astype(np.int32)
        x_max = np.clip(np.floor(np.maximum(np.maximum(x0, x1), x2)), -1, width - 1).astype(np.int32)
        y_min = np.clip(np.ceil(np.minimum(np.minimum(y0, y1), y2)), 0, height).astype(np.int32)
        y_max = np.clip(np.floor(np.maximum(np.maximum(y0, y1), y2)), -1, height - 1).astype(np.int32)
        box_w, box_h = x_max - x_min + 1, y_max - y_min + 1
        determinant = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        visible = np.flatnonzero((box_w > 0) & (box_h > 0) & (np.abs(determinant) > 1e-9))
        image = np.empty((height, width, 3), np.uint8)
        image[:] = self._background
        if len(visible) == 0:
            return image
        # Barycentric coordinates and depth as planes over the screen, one set of coefficients per triangle:
        # b1 = a1 x + c1 y + d1, b2 = a2 x + c2 y + d2, z = az x + cz y + dz.
        x0, x1, x2, y0, y1, y2 = (v[visible] for v in (x0, x1, x2, y0, y1, y2))
        inverse = 1.0 / determinant[visible]
        a1, c1 = (y2 - y0) * inverse, -(x2 - x0) * inverse
        a2, c2 = -(y1 - y0) * inverse, (x1 - x0) * inverse
        d1, d2 = -(a1 * x0 + c1 * y0), -(a2 * x0 + c2 * y0)
        corner_ids = faces[visible]
        z0, z1, z2 = (depth[corner_ids[:, k]] for k in range(3))
        az, cz = a1 * (z1 - z0) + a2 * (z2 - z0), c1 * (z1 - z0) + c2 * (z2 - z0)
        dz = z0 + d1 * (z1 - z0) + d2 * (z2 - z0)
        box_w, x_min, y_min = box_w[visible], x_min[visible], y_min[visible]
        counts = box_w * box_h[visible]

        # Every pixel of every triangle's bounding box, as one flat batch.
        triangle = np.repeat(np.arange(len(visible), dtype=np.int32), counts)
        local = np.arange(len(triangle), dtype=np.int32) - np.repeat(np.cumsum(counts, dtype=np.int32) - counts, counts)
        row_length = box_w[triangle]
        pixel_y = y_min[triangle] + local // row_length
        pixel_x = x_min[triangle] + local % row_length
        fx, fy = pixel_x.astype(np.float32), pixel_y.astype(np.float32)
        bary1 = a1[triangle] * fx + c1[triangle] * fy + d1[triangle]
        bary2 = a2[triangle] * fx + c2[triangle] * fy + d2[triangle]
        inside = np.flatnonzero((bary1 >= -1e-5) & (bary2 >= -1e-5) & (bary1 + bary2 <= 1 + 1e-5))
        triangle, bary1, bary2 = triangle[inside], bary1[inside], bary2[inside]
        pixel = pixel_y[inside] * width + pixel_x[inside]
        z = az[triangle] * fx[inside] + cz[triangle] * fy[inside] + dz[triangle]

        # z-buffer: per pixel, the smallest key (nearest depth in the high bits, sample index in the low bits).
        near, far = self._depth_range
        quantised = (np.clip((far - z) / (far - near), 0, 1) * ((1 << _DEPTH_BITS) - 1)).astype(np.int64)
        keys = (quantised << 32) | np.arange(len(z), dtype=np.int64)
        buffer = np.full(height * width, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(buffer, pixel, keys)
        covered = np.flatnonzero(buffer != np.iinfo(np.int64).max)
        winner = buffer[covered] & 0xFFFFFFFF
        triangle = triangle[winner]
        if self.shading == "gouraud":
            c = corner_ids[triangle]
            bary1, bary2 = bary1[winner], bary2[winner]
            light = (
                (1.0 - bary1 - bary2) * light_values[c[:, 0]]
                + bary1 * light_values[c[:, 1]]
                + bary2 * light_values[c[:, 2]]
            )
        else:
            light = light_values[visible[triangle]]
        colour = np.clip(light[:, None] * self._albedo * 255.0, 0, 255).astype(np.uint8)
        image.reshape(-1, 3)[covered] = colour
        return image


def render_frame(rig: FaceRig | str | os.PathLike | None, weights: np.ndarray, height: int = 512, shading: str = "gouraud") -> np.ndarray:
    """Render the rig with one frame of blendshape weights [52] (ARKit order) -> uint8 RGB [H, W, 3]."""
    return FaceRenderer(rig, height=height, shading=shading).render(weights)


# ---------------------------------------------------------------------------------------------------------------
# Labels and curves


def label_mask(text: str, height: int, width: int) -> np.ndarray:
    """Coverage [height, width] in [0, 1] of ``text`` written in the top-left corner (drawn once, pasted per
    frame by :func:`apply_label`)."""
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.new("L", (width, height), 0)
    size = max(12, height // 24)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        font = ImageFont.load_default()
    ImageDraw.Draw(picture).text((size // 2, size // 3), text, fill=255, font=font)
    return np.asarray(picture, np.float32) / 255.0


def apply_label(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (240, 240, 240)) -> np.ndarray:
    """Blend a :func:`label_mask` into ``image`` [H, W, 3] uint8 in place and return it."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows):
        band = slice(rows[0], rows[-1] + 1)
        alpha = mask[band, :, None]
        image[band] = (image[band] * (1 - alpha) + np.asarray(colour, np.float32) * alpha).astype(np.uint8)
    return image


class CurvesStrip:
    """A plot of some blendshape curves over the whole clip, drawn once; ``frame(i)`` adds a time cursor."""

    def __init__(
        self,
        animations: Sequence[np.ndarray],
        labels: Sequence[str],
        fps: float,
        width: int,
        height: int,
        names: Sequence[str] = DEFAULT_CURVES,
    ):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        unknown = [n for n in names if n not in BLENDSHAPE_INDEX]
        if unknown:
            raise ValueError(f"curve names must be ARKit names, got unknown names {unknown}")
        dpi = 100
        figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor=np.asarray(BACKGROUND) / 255)
        axes = figure.add_axes((0.06, 0.16, 0.70, 0.68), facecolor=np.asarray(BACKGROUND) / 255)
        frames = max(len(a) for a in animations)
        seconds = np.arange(frames) / fps
        colours = [f"C{i}" for i in range(len(names))]
        styles = ["-", "--", ":", "-."]
        for a, animation in enumerate(animations):
            for colour, name in zip(colours, names):
                axes.plot(
                    seconds[: len(animation)],
                    animation[:, BLENDSHAPE_INDEX[name]],
                    styles[a % len(styles)],
                    color=colour,
                    linewidth=1.0,
                    label=name if a == 0 else None,
                )
        axes.set_xlim(0, max(seconds[-1], 1.0 / fps))
        axes.set_ylim(-0.02, 1.02)
        axes.tick_params(colors="0.8", labelsize=7)
        for spine in axes.spines.values():
            spine.set_color("0.5")
        legend = axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=6, frameon=False)
        for text in legend.get_texts():
            text.set_color("0.85")
        if len(animations) > 1:
            axes.set_title(
                "  ".join(f"{styles[i % 4]} {lab}" for i, lab in enumerate(labels)), fontsize=7, color="0.85", pad=3
            )
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        drawn = np.asarray(canvas.buffer_rgba())[..., :3]
        # Exactly [height, width, 3], whatever the figure-size rounding.
        self.image = np.empty((height, width, 3), np.uint8)
        self.image[:] = np.asarray(BACKGROUND, np.uint8)
        self.image[: min(height, drawn.shape[0]), : min(width, drawn.shape[1])] = drawn[:height, :width]
        # Pixel column of each frame's time, from the axes' data -> display transform (origin bottom-left).
        display = axes.transData.transform(np.stack([seconds, np.zeros_like(seconds)], axis=1))
        self._columns = np.clip(np.round(display[:, 0]).astype(int), 0, self.image.shape[1] - 1)
        box = axes.get_window_extent()
        self._rows = (max(0, int(drawn.shape[0] - box.y1)), min(height, int(drawn.shape[0] - box.y0)))

    def frame(self, index: int) -> np.ndarray:
        image = self.image.copy()
        column = self._columns[min(index, len(self._columns) - 1)]
        image[self._rows[0] : self._rows[1], column] = (255, 255, 255)
        return image


def compose_frames(
    animations: Sequence[np.ndarray],
    renderer: FaceRenderer,
    labels: Sequence[str] | None = None,
    curves: bool | Sequence[str] = False,
    fps: float = 30.0,
) -> Iterator[np.ndarray]:
    """Yield the video frames (uint8 [H, W, 3]) of ``animations`` (each [frames, 52]) side by side, with
    ``labels`` over each face and, if ``curves``, a strip of blendshape curves under them."""
    frames = max(len(a) for a in animations)
    strip = None
    if curves:
        names = DEFAULT_CURVES if curves is True else tuple(curves)
        width = renderer.width * len(animations)
        strip = CurvesStrip(animations, labels or [str(i) for i in range(len(animations))], fps, width, 160, names)
    masks = [label_mask(text, renderer.height, renderer.width) for text in labels] if labels else None
    for index in range(frames):
        panels = []
        for a, animation in enumerate(animations):
            weights = animation[min(index, len(animation) - 1)]
            panel = renderer.render(weights)
            if masks:
                apply_label(panel, masks[a])
            panels.append(panel)
        frame = np.concatenate(panels, axis=1)
        if strip is not None:
            frame = np.concatenate([frame, strip.frame(index)], axis=0)
        yield frame


# ---------------------------------------------------------------------------------------------------------------
# Video files


def _prepare_audio(audio: np.ndarray, sampling_rate: int, num_samples_at: float) -> tuple[np.ndarray, int]:
    """Mono float32 audio at an AAC sample rate, trimmed / zero-padded to ``num_samples_at`` seconds."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:  # (channels, samples)
        audio = audio.mean(axis=0)
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-D or 2-D (channels, samples), got shape {audio.shape}")
    if sampling_rate not in AAC_SAMPLE_RATES:
        from scipy.signal import resample_poly

        target = 48000
        divisor = np.gcd(int(sampling_rate), target)
        audio = resample_poly(audio, target // divisor, int(sampling_rate) // divisor).astype(np.float32)
        sampling_rate = target
    wanted = int(round(num_samples_at * sampling_rate))
    if len(audio) >= wanted:
        audio = audio[:wanted]
    else:
        audio = np.pad(audio, (0, wanted - len(audio)))
    return np.clip(audio, -1.0, 1.0), sampling_rate


def _video_codec() -> str:
    """H.264 (libx264) where the PyAV build has it (plays everywhere), MPEG-4 part 2 otherwise."""
    import av

    for name in ("libx264", "h264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - PyAV raises different errors across versions
            continue
    raise RuntimeError("this PyAV build has no H.264 or MPEG-4 encoder")


def write_mp4(
    path: str | os.PathLike,
    frames: Iterator[np.ndarray],
    fps: float,
    num_frames: int,
    audio: np.ndarray | None = None,
    sampling_rate: int = 16000,
    crf: int = 20,
) -> Path:
    """Encode uint8 RGB frames at ``fps`` to an MP4 (H.264, yuv420p), with ``audio`` as AAC, atomically."""
    import av

    rate = Fraction(fps).limit_denominator(1001)
    codec = _video_codec()
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("cannot write a video with no frames")
    if audio is not None:
        audio, sampling_rate = _prepare_audio(audio, sampling_rate, num_frames / float(rate))

    def encode(tmp: str) -> None:
        with av.open(tmp, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            # Every stream must exist before the first packet is muxed.
            video = container.add_stream(codec, rate=rate)
            video.height, video.width = first.shape[:2]
            video.pix_fmt = "yuv420p"
            video.codec_context.time_base = 1 / rate
            if codec in ("libx264", "h264"):
                video.options = {"crf": str(crf), "preset": "veryfast"}
            else:
                video.bit_rate = 4_000_000
            audio_stream = None
            if audio is not None:
                audio_stream = container.add_stream("aac", rate=sampling_rate, layout="mono")
                audio_stream.bit_rate = 96000
            for index, image in enumerate(itertools.chain([first], frames)):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = index  # in 1 / fps units: one video frame per animation frame
                frame.time_base = video.codec_context.time_base
                container.mux(video.encode(frame))
            container.mux(video.encode())
            if audio_stream is not None:
                chunk = 1024 * 16
                for start in range(0, len(audio), chunk):
                    piece = audio[start : start + chunk]
                    frame = av.AudioFrame.from_ndarray(piece[None, :], format="fltp", layout="mono")
                    frame.sample_rate = sampling_rate
                    frame.pts = start
                    frame.time_base = Fraction(1, sampling_rate)
                    container.mux(audio_stream.encode(frame))
                container.mux(audio_stream.encode())

    return atomic_write(path, encode, suffix=".mp4")


def write_gif(path: str | os.PathLike, frames: Iterator[np.ndarray], fps: float) -> Path:
    """Write uint8 RGB frames as a looping GIF (adaptive palette per frame), atomically."""
    from PIL import Image

    pictures = [Image.fromarray(image).quantize(colors=255, method=Image.Quantize.MEDIANCUT) for image in frames]
    if not pictures:
        raise ValueError("cannot write a GIF with no frames")
    # GIF delays are in 10 ms steps; the frame count is exact, the timing rounds. PIL picks the format from the
    # file name: the temporary file must end in ".gif".
    return atomic_write(
        path,
        lambda tmp: pictures[0].save(tmp, save_all=True, append_images=pictures[1:], duration=1000.0 / fps, loop=0),
        suffix=".gif",
    )


def render_video(
    path: str | os.PathLike,
    blendshapes: np.ndarray | Sequence[np.ndarray],
    fps: float = 30.0,
    audio: np.ndarray | None = None,
    sampling_rate: int = 16000,
    rig: FaceRig | str | os.PathLike | None = None,
    labels: Sequence[str] | None = None,
    curves: bool | Sequence[str] = False,
    height: int = 384,
    shading: str = "gouraud",
    renderer: FaceRenderer | None = None,
) -> Path:
    """Render an animation (``[frames, 52]``) or several side by side (a list of them, e.g. STA vs RL, or
    prediction vs ground truth) to ``path`` (.mp4 with ``audio`` muxed in as AAC, or .gif).

    Args:
        blendshapes: ``[frames, 52]`` in ARKit order, or a list of such arrays (shorter ones hold their last frame).
        fps: animation frame rate (Hz); the video has one frame per animation frame.
        audio: mono (or (channels, samples)) float waveform at ``sampling_rate`` Hz; trimmed / padded to the
            animation's duration. Ignored for GIF.
        rig: rig object, path or ``None`` (default rig).
        labels: one label per animation, written over its face.
        curves: ``True`` for a strip of the default blendshape curves under the faces, or a list of names.
        height: face image height in pixels.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ValueError(f"path must end in .mp4 or .gif, got {Path(path).name!r}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if isinstance(blendshapes, np.ndarray) or (hasattr(blendshapes, "shape") and len(blendshapes.shape) == 2):
        animations = [validate_blendshapes(np.asarray(blendshapes))]
    else:
        animations = [
            validate_blendshapes(np.asarray(a), argument=f"blendshapes[{i}]") for i, a in enumerate(blendshapes)
        ]
    for i, animation in enumerate(animations):
        if animation.ndim != 2 or len(animation) == 0:
            raise ValueError(f"blendshapes[{i}] must have shape [frames > 0, 52], got shape {animation.shape}")
    if labels is not None and len(labels) != len(animations):
        raise ValueError(f"labels must have one entry per animation ({len(animations)}), got {len(labels)}")
    renderer = renderer or FaceRenderer(rig, height=height, shading=shading)
    num_frames = max(len(a) for a in animations)
    frames = compose_frames(animations, renderer, labels=labels, curves=curves, fps=fps)
    if suffix == ".gif":
        return write_gif(path, frames, fps)
    return write_mp4(path, frames, fps, num_frames, audio=audio, sampling_rate=sampling_rate)
