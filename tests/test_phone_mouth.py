"""A mouth from recognised phones with the rest of the face from the model (esarm.phone_mouth, esarm animate
--mouth)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from esarm.audio import resample
from esarm.blendshapes import BLENDSHAPE_INDEX, region_indices
from esarm.cli import main
from esarm.data.synthetic.tts import get_synthesizer
from esarm.export import load_animation
from esarm.phone_mouth import phone_visemes, with_phone_mouth

FPS = 30.0
MOUTH = region_indices("mouth")
OTHERS = [i for i in range(52) if i not in MOUTH]


@pytest.fixture(scope="module")
def speech():
    """Half a second of silence, eSpeak NG saying an open-vowel sentence, half a second of silence (16 kHz)."""
    utterance = get_synthesizer().synthesize("Father saw a large palm tree by the water.", rate=140)
    audio = resample(utterance.audio, utterance.sampling_rate, 16000)
    silence = np.zeros(8000, np.float32)
    return np.concatenate([silence, audio, silence]).astype(np.float32)


def frames(audio) -> int:
    return int(round(len(audio) / 16000 * FPS))


def test_visemes_open_the_jaw_in_speech_and_rest_in_silence(speech):
    face = phone_visemes(speech, 16000, FPS, frames(speech))
    assert face.shape == (frames(speech), 52) and face.dtype == np.float32
    jaw = face[:, BLENDSHAPE_INDEX["jawOpen"]]
    edges = np.r_[jaw[:10], jaw[-10:]]  # the first and last third of a second: silence
    assert jaw[20:-20].mean() > 3 * edges.mean()
    assert jaw[20:-20].max() > 0.2


def test_modes_replace_mix_or_keep_the_mouth(speech):
    rng = np.random.default_rng(0)
    model_face = rng.uniform(0, 1, (frames(speech), 52)).astype(np.float32)
    lips = phone_visemes(speech, 16000, FPS, len(model_face))[:, MOUTH]
    phones = with_phone_mouth(model_face, speech, 16000, FPS, "phones")
    mix = with_phone_mouth(model_face, speech, 16000, FPS, "mix")
    np.testing.assert_array_equal(phones[:, OTHERS], model_face[:, OTHERS])  # the upper face stays the model's
    np.testing.assert_array_equal(mix[:, OTHERS], model_face[:, OTHERS])
    np.testing.assert_array_equal(phones[:, MOUTH], lips)
    np.testing.assert_allclose(mix[:, MOUTH], 0.5 * (model_face[:, MOUTH] + lips), rtol=0, atol=1e-7)
    np.testing.assert_array_equal(with_phone_mouth(model_face, speech, 16000, FPS, "model"), model_face)


def test_bad_arguments_are_named(speech):
    with pytest.raises(ValueError, match=r"mouth must be one of \['model', 'phones', 'mix'\], got 'lips'"):
        with_phone_mouth(np.zeros((5, 52)), speech, 16000, FPS, "lips")
    with pytest.raises(ValueError, match=r"blendshapes must have shape \[frames, 52\], got \(5, 51\)"):
        with_phone_mouth(np.zeros((5, 51)), speech, 16000, FPS)


def test_cli_mouth_from_phones(tmp_path, speech):
    """esarm animate --mouth phones: the default model's face with the phones' mouth."""
    wav = tmp_path / "speech.wav"
    soundfile.write(wav, speech, 16000)
    for mouth in ("model", "phones"):
        assert main(["animate", str(wav), "--out", str(tmp_path / f"{mouth}.json"), "--mouth", mouth]) == 0
    model, fps = load_animation(tmp_path / "model.json")
    phones, _ = load_animation(tmp_path / "phones.json")
    assert fps == FPS and not np.allclose(phones[:, MOUTH], model[:, MOUTH])
    heard = soundfile.read(wav, dtype="float32")[0]  # the 16-bit audio the command read
    np.testing.assert_allclose(phones, with_phone_mouth(model, heard, 16000, FPS, "phones"), rtol=0, atol=2e-6)
    assert json.loads((tmp_path / "phones.json").read_text())["metadata"]["mouth"] == "phones"
