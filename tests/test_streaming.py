"""Long audio (windowed inference with cross-fade) and the streaming API."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers.models.wavlm.modeling_wavlm import WavLMAttention

from esarm.blendshapes import EMOTIONS
from esarm.streaming import StreamingAnimator, animate_audio, resolve_condition_ids

RATE = 16000


class LocalModel:
    """Stand-in for ESARMSTAForGeneration whose frame t is the mean of the audio samples of frame t: any
    misplaced window, frame offset or fade shows up as an error against the unchunked result."""

    audio_encoder = None  # no speech encoder: the CPU inference levers leave it as it is

    def __init__(self, fps: float = 30.0, frames_per_token: int = 2):
        self.config = SimpleNamespace(sampling_rate=RATE, fps=fps, frames_per_token=frames_per_token)
        self.calls: list[int] = []

    def eval(self):
        return self

    @property
    def min_num_samples(self) -> int:
        return math.ceil(RATE / self.config.fps)

    def num_animation_frames(self, num_samples: int) -> int:
        return int(math.floor(num_samples * self.config.fps / RATE + 0.5))

    def generate(self, input_values, emotion_ids=None, **kwargs):
        audio = input_values[0].numpy()
        self.calls.append(len(audio))
        frames = self.num_animation_frames(len(audio))
        edges = [int(round(i * RATE / self.config.fps)) for i in range(frames + 1)]
        means = np.array([audio[a:b].mean() if b > a else audio[-1] for a, b in zip(edges[:-1], edges[1:])])
        blendshapes = torch.from_numpy(np.repeat(means[:, None], 52, axis=1).astype(np.float32))[None]
        return SimpleNamespace(
            blendshapes=blendshapes,
            frame_mask=torch.ones(1, frames, dtype=torch.bool),
            emotion_ids=torch.tensor([5]) if emotion_ids is None else emotion_ids,
        )


NO_NORMALISE = SimpleNamespace(feature_extractor=SimpleNamespace(do_normalize=False), speakers=["ann", "bob"])


def smooth_audio(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * 0.7 * t) + 0.3 * np.sin(2 * np.pi * 2.3 * t + 1)).astype(np.float32)


@pytest.mark.parametrize("seconds", [0.05, 1.0, 7.3, 12.0])
def test_windows_line_up_with_the_unchunked_timeline(seconds):
    audio = smooth_audio(seconds)
    model = LocalModel()
    full = animate_audio(model, audio, processor=NO_NORMALISE, chunk_seconds=1000).blendshapes
    chunked = animate_audio(model, audio, processor=NO_NORMALISE, chunk_seconds=2.0, overlap_seconds=0.4).blendshapes
    assert chunked.shape == full.shape == (model.num_animation_frames(len(audio)), 52)
    np.testing.assert_allclose(chunked, full, atol=1e-6)  # seam error of a local model: none


def test_windows_are_bounded_in_length():
    model = LocalModel()
    animate_audio(model, smooth_audio(30.0), processor=NO_NORMALISE, chunk_seconds=2.0, overlap_seconds=0.5)
    assert max(model.calls) <= 2 * RATE and len(model.calls) >= (30 - 2) / 1.5


def test_streaming_in_random_pieces_equals_the_whole_file():
    audio = smooth_audio(9.7) + np.random.default_rng(0).normal(0, 0.05, int(9.7 * RATE)).astype(np.float32)
    model = LocalModel()
    whole = animate_audio(model, audio, chunk_seconds=2.0, overlap_seconds=0.5).blendshapes  # normalising
    streamer = StreamingAnimator(model, chunk_seconds=2.0, overlap_seconds=0.5)
    rng = np.random.default_rng(1)
    pieces, position, emitted_at = [], 0, []
    while position < len(audio):
        size = int(rng.integers(100, 9000))
        frames = streamer.push(audio[position : position + size])
        position += size
        pieces.append(frames)
        if len(frames):
            emitted_at.append((min(position, len(audio)), sum(len(p) for p in pieces)))
    pieces.append(streamer.flush())
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-6)
    # Stated latency: every frame is out within latency_seconds of audio after its time.
    assert streamer.latency_seconds == pytest.approx(2.0)
    for samples_in, frames_out in emitted_at:
        assert frames_out / 30 >= samples_in / RATE - streamer.latency_seconds - 1 / 30
    assert streamer.flush().shape == (0, 52)
    with pytest.raises(ValueError, match="after flush"):
        streamer.push(audio[:100])


def test_streaming_resamples_input_rate():
    audio = smooth_audio(3.0)
    from scipy.signal import resample_poly

    audio_44k = resample_poly(audio, 441, 160).astype(np.float32)
    model = LocalModel()
    ours = animate_audio(
        model, audio_44k, sampling_rate=44100, processor=NO_NORMALISE, chunk_seconds=1.0, overlap_seconds=0.4
    )
    ours = ours.blendshapes
    reference = animate_audio(model, audio, processor=NO_NORMALISE, chunk_seconds=1.0, overlap_seconds=0.4).blendshapes
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours[5:-5], reference[5:-5], atol=2e-2)


def test_auto_emotion_is_taken_from_the_first_window_and_kept():
    model = LocalModel()
    result = animate_audio(model, smooth_audio(5.0), chunk_seconds=2.0, overlap_seconds=0.5, emotion="auto")
    assert result.emotion == EMOTIONS[5]
    assert animate_audio(model, smooth_audio(5.0), chunk_seconds=2.0, overlap_seconds=0.5).emotion == "neutral"


def test_condition_ids_and_their_errors():
    assert resolve_condition_ids("happy", 3, "bob", ["ann", "bob"]) == (EMOTIONS.index("happy"), 2, 2)
    assert resolve_condition_ids("auto", None, None) == (None, None, 0)
    assert resolve_condition_ids(1, 1, "0", ["ann"]) == (1, 0, 0)
    with pytest.raises(ValueError, match="emotion must be"):
        resolve_condition_ids("joyful", None, None)
    with pytest.raises(ValueError, match="intensity must be"):
        resolve_condition_ids("happy", 4, None)
    # names match in any case; a speaker the model does not know is the unknown speaker, an id out of range fails
    assert resolve_condition_ids("HAPPY", "2", "Bob", ["ann", "bob"]) == (EMOTIONS.index("happy"), 1, 2)
    assert resolve_condition_ids(None, None, "carol", ["ann"]) == (0, None, 0)  # no emotion given: neutral
    with pytest.raises(ValueError, match=r"speaker must be one of the known speakers \['ann'\], an id in \[0, 1\]"):
        resolve_condition_ids(None, None, 2, ["ann"])
    with pytest.raises(ValueError, match="overlap_seconds"):
        StreamingAnimator(LocalModel(), chunk_seconds=1.0, overlap_seconds=1.0)


def test_an_unknown_speaker_name_warns_with_the_known_names(caplog):
    with caplog.at_level("WARNING", logger="esarm.streaming"):
        assert resolve_condition_ids(None, None, "Bob", ["ann", "bob"])[2] == 2
        assert resolve_condition_ids(None, None, "0", ["ann", "bob"])[2] == 0  # the unknown speaker, asked by id
        assert not caplog.records
        assert resolve_condition_ids(None, None, "nobody_here", ["ann", "bob"])[2] == 0
    (record,) = caplog.records
    assert record.getMessage() == (
        "speaker 'nobody_here' is not a speaker the model knows (ann, bob); animating as the unknown speaker"
    )


def test_non_finite_audio_is_an_error_naming_the_samples():
    audio = np.zeros(RATE, np.float32)
    audio[[10, 20, 30]] = np.nan, np.inf, -np.inf
    with pytest.raises(ValueError, match=r"audio must be finite, got 3 NaN/inf samples \(the first at sample 10"):
        StreamingAnimator(LocalModel()).push(audio)


@pytest.fixture(scope="module")
def tiny_model():
    from esarm import ESARMSTAConfig, ESARMSTAForGeneration

    torch.manual_seed(0)
    return ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval()


def test_tiny_model_short_audio_equals_one_generate_call(tiny_model):
    audio = smooth_audio(1.5)
    result = animate_audio(tiny_model, audio, emotion="angry", intensity=2, chunk_seconds=4.0)
    normalised = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    with torch.no_grad():
        reference = tiny_model.generate(
            torch.from_numpy(normalised)[None], emotion_ids=torch.tensor([1]), intensity_ids=torch.tensor([1]),
            speaker_ids=torch.tensor([0]),
        )  # fmt: skip
    np.testing.assert_allclose(result.blendshapes, reference.blendshapes[0].numpy(), atol=1e-5)
    assert result.emotion == "angry" and result.fps == 30


def test_tiny_model_seam_error(tiny_model):
    """Chunked vs unchunked on a 4 s clip: the seams add no error beyond what a window's shorter context does."""
    rng = np.random.default_rng(0)
    audio = (smooth_audio(4.0) * rng.normal(size=4 * RATE)).astype(np.float32)
    full = animate_audio(tiny_model, audio, emotion="happy", chunk_seconds=100).blendshapes
    chunked = animate_audio(tiny_model, audio, emotion="happy", chunk_seconds=2.0, overlap_seconds=0.6).blendshapes
    assert chunked.shape == full.shape == (120, 52)
    error = np.abs(chunked - full).mean(axis=1)  # per frame
    assert error.mean() < 0.1
    # Frame-to-frame change at the window borders is within the model's own range of changes.
    hop = 42  # (2.0 - 0.6) s at 30 fps, snapped to the 6-frame grid
    seams = [k * hop + o for k in range(1, 3) for o in range(0, 18) if k * hop + o < 119]
    jumps = np.abs(np.diff(chunked, axis=0)).max(axis=1)
    reference_jumps = np.abs(np.diff(full, axis=0)).max(axis=1)
    assert jumps[seams].max() <= 1.25 * reference_jumps.max()


def test_low_latency_windows_hear_context_and_lookahead_and_keep_one_token():
    audio = smooth_audio(6.0)
    model = LocalModel()
    full = animate_audio(model, audio, processor=NO_NORMALISE, chunk_seconds=1000).blendshapes
    model.calls.clear()
    streamer = StreamingAnimator.low_latency(model, NO_NORMALISE, lookahead_seconds=0.1, context_seconds=0.5)
    assert streamer.chunk_frames == 2 and streamer.lookahead_frames == 3 and streamer.context_frames == 16
    assert streamer.latency_seconds == pytest.approx(5 / 30)
    pieces, position, emitted_at = [], 0, []
    while position < len(audio):
        pieces.append(streamer.push(audio[position : position + 320]))  # 20 ms pieces, as from a sound card
        position += 320
        emitted_at.append((min(position, len(audio)), sum(len(p) for p in pieces)))
    pieces.append(streamer.flush())
    streamed = np.concatenate(pieces)
    assert streamed.shape == full.shape == (180, 52)
    # A local model makes the windows invisible: only the frame grid's rounding to whole samples (<= 0.5 sample
    # per frame edge, 2 samples of ~533) separates the results.
    np.testing.assert_allclose(streamed, full, atol=5e-3)
    for samples_in, frames_out in emitted_at:
        assert frames_out / 30 >= samples_in / RATE - streamer.latency_seconds - 1 / 30
    # Each window hears at most context + one token + look-ahead (16 + 2 + 3 frames = 0.7 s), one per token.
    assert max(model.calls) == int(0.7 * RATE) and len(model.calls) >= 89


def test_lookahead_and_context_errors():
    with pytest.raises(ValueError, match="lookahead_seconds must be >= 0"):
        StreamingAnimator(LocalModel(), lookahead_seconds=-0.1)
    with pytest.raises(ValueError, match="context_seconds must be >= 0"):
        StreamingAnimator(LocalModel(), context_seconds=float("nan"))


def test_tiny_model_low_latency_window_is_one_generate_call_on_context_and_lookahead(tiny_model):
    rng = np.random.default_rng(0)
    audio = (smooth_audio(3.0) * rng.normal(size=3 * RATE)).astype(np.float32)
    live = animate_audio(tiny_model, audio, emotion="happy", chunk_seconds=1 / 15, overlap_seconds=0.0,
                         context_seconds=1.0, lookahead_seconds=0.3).blendshapes  # fmt: skip
    assert live.shape == (90, 52) and np.all(np.isfinite(live))
    # Frames 50-51 (one token) come from the window that hears frames 20..61: 1 s before, 0.3 s after.
    heard = audio[round(20 * RATE / 30) : round(61 * RATE / 30)]
    heard = (heard - heard.mean()) / np.sqrt(heard.var() + 1e-7)
    with torch.no_grad():
        reference = tiny_model.generate(torch.from_numpy(heard)[None], emotion_ids=torch.tensor([5]))
    np.testing.assert_allclose(live[50:52], reference.blendshapes[0, 30:32].numpy(), atol=1e-5)
    # Enough context and look-ahead to hear the whole clip in every window: the offline result.
    offline = animate_audio(tiny_model, audio, emotion="happy", chunk_seconds=100).blendshapes
    whole = animate_audio(tiny_model, audio, emotion="happy", chunk_seconds=1 / 15, overlap_seconds=0.0,
                          context_seconds=3.0, lookahead_seconds=3.0).blendshapes  # fmt: skip
    np.testing.assert_allclose(whole, offline, atol=1e-5)


def test_cpu_defaults_fuse_the_encoder_attention_and_keep_the_animation():
    from esarm import ESARMSTAConfig, ESARMSTAForGeneration
    from esarm.inference import WavLMSdpaAttention

    def attention_types(model):
        return {type(m) for m in model.audio_encoder.modules() if isinstance(m, WavLMAttention)}

    torch.manual_seed(0)
    plain = ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval()  # not the shared fixture: the defaults act in place
    fused = copy.deepcopy(plain)
    audio = smooth_audio(1.5) * np.random.default_rng(0).normal(size=int(1.5 * RATE)).astype(np.float32)
    expected = animate_audio(plain, audio, emotion="sad", cpu_defaults=False).blendshapes
    assert attention_types(plain) == {WavLMAttention}  # cpu_defaults=False: the model as given
    animator = StreamingAnimator(fused, emotion="sad")
    assert animator.model is fused and attention_types(fused) == {WavLMSdpaAttention}
    np.testing.assert_allclose(animate_audio(fused, audio, emotion="sad").blendshapes, expected, atol=1e-5)
