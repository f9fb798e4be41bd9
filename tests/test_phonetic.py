"""The phonetic front end: PocketSphinx phone features per frame (esarm.phonetic), their dataset cache
(esarm.data.phone_features), the collator, the STA model's phone path, a saved folder and streaming."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from esarm.data.tts import get_synthesizer
from huggingface_hub.errors import StrictDataclassError
from transformers import pipeline

from esarm import ESARMProcessor, ESARMSTAConfig, ESARMSTAForGeneration, phonetic
from esarm.audio import load_audio, resample
from esarm.data.collators import STACollator
from esarm.data.phone_features import PHONE_FEATURES_COLUMN, add_phone_features
from esarm.data.phones import arpabet_to_ipa, openness, openness_curve
from esarm.data.real_speech import SET_FOLDER
from esarm.phonetic import NUM_PHONE_FEATURES, PHONES, phone_features, recognize_phones, tail_phone_features
from esarm.streaming import StreamingAnimator

SENTENCE = "Father saw a large palm tree by the water."
# the allphone settings before DECODER_SETTINGS changed to lw 0.5, beams 1e-5: what older phonetic models heard
EARLIER_SETTINGS = {"lw": 2.0, "beam": 1e-20, "pbeam": 1e-20}


@pytest.fixture(scope="module")
def spoken():
    """eSpeak NG speaking SENTENCE slowly: (16 kHz samples, IPA phonemes, their start times)."""
    utterance = get_synthesizer().synthesize(SENTENCE, rate=140)
    return resample(utterance.audio, utterance.sampling_rate, 16000), utterance.phonemes, utterance.phoneme_starts


def test_features_are_one_hot_phones_on_the_100_fps_grid(spoken):
    audio, _, _ = spoken
    features = phone_features(audio)
    assert features.shape == (len(audio) // 160 + 1, NUM_PHONE_FEATURES) and features.dtype == np.float32
    np.testing.assert_array_equal(features[:, : len(PHONES)].sum(1), 1.0)
    assert np.isfinite(features[:, -1]).all() and np.abs(features[:, -1]).max() <= 5.0
    assert features[0, PHONES.index("SIL")] == 1.0  # the clip starts in silence
    # the segments cover the clip at 100 frames per second: their last frame is the clip's last 10 ms
    segments = recognize_phones(audio)
    assert segments[0].start == 0 and abs(segments[-1].end - len(audio) // 160) <= 2


def test_recognised_phones_follow_the_spoken_vowels(spoken):
    """The recognised phones' graded openness follows eSpeak's own phoneme timings: vowels where it speaks vowels."""
    audio, phonemes, starts = spoken
    features = phone_features(audio)
    phone_openness = np.array([0.0 if p == "SIL" else openness(arpabet_to_ipa(p)) for p in PHONES])
    recognised = features[:, : len(PHONES)] @ phone_openness
    reference = openness_curve(phonemes, starts, len(audio) / 16000, 100, len(features), smoothing_frames=1)
    assert np.corrcoef(recognised, reference)[0, 1] > 0.5
    vowel = reference >= 0.4
    assert (recognised[vowel] >= 0.4).mean() > 0.6  # most vowel frames are heard as vowels
    assert (recognised[~vowel] >= 0.4).mean() < 0.2  # few consonant or pause frames are


def test_features_do_not_depend_on_the_level_or_offset(spoken):
    """The corpus caches raw clips and the model hears normalised ones: both give the same phones (the 16-bit
    rounding of the two may differ by one step, which moves a segment's score by well under 0.05)."""
    audio, _, _ = spoken
    normalised = (audio - audio.mean()) / audio.std()
    raw, scaled = phone_features(audio), phone_features(normalised * 0.3 + 0.01)
    np.testing.assert_array_equal(raw[:, : len(PHONES)], scaled[:, : len(PHONES)])
    np.testing.assert_allclose(raw[:, -1], scaled[:, -1], atol=0.05)


def test_bad_samples_are_rejected():
    with pytest.raises(ValueError, match="samples must be a non-empty 1-D array"):
        phone_features(np.zeros((2, 100), np.float32))


def test_missing_pocketsphinx_names_the_install_command(monkeypatch, spoken):
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # `import pocketsphinx` raises ImportError
    monkeypatch.setattr(phonetic, "_decoders", {})
    with pytest.raises(ImportError, match="pip install pocketsphinx"):
        phone_features(spoken[0])


def test_cached_column_equals_the_features(spoken):
    from datasets import Dataset

    audio = spoken[0]
    dataset = Dataset.from_dict({"audio": [audio[:16000], audio], "sampling_rate": [16000, 16000]})
    cached = add_phone_features(dataset, num_proc=1)
    for row, clip in zip(cached, (audio[:16000], audio)):
        np.testing.assert_array_equal(np.asarray(row[PHONE_FEATURES_COLUMN], np.float32), phone_features(clip))
    assert add_phone_features(cached) is cached  # already there: kept


def test_cache_is_keyed_by_the_decoder_settings(tmp_path, spoken, monkeypatch):
    """A dataset on disk reuses its cached column for the same settings and decodes again for other settings."""
    from datasets import Dataset, load_from_disk

    audio = spoken[0]
    Dataset.from_dict({"audio": [audio], "sampling_rate": [16000]}).save_to_disk(str(tmp_path / "set"))
    dataset = load_from_disk(str(tmp_path / "set"))
    first = add_phone_features(dataset, num_proc=1)
    assert add_phone_features(dataset, num_proc=1).cache_files == first.cache_files  # same settings: reused
    wide = np.asarray(first[0][PHONE_FEATURES_COLUMN], np.float32)
    narrow_settings = {**phonetic.DECODER_SETTINGS, "beam": 1e-4, "pbeam": 1e-4}
    narrow = phone_features(audio, narrow_settings)
    assert not np.array_equal(narrow, wide)  # a beam this narrow changes the phones of this clip
    for key, value in narrow_settings.items():
        monkeypatch.setitem(phonetic.DECODER_SETTINGS, key, value)
    second = add_phone_features(dataset, num_proc=1)
    assert second.cache_files != first.cache_files
    np.testing.assert_array_equal(np.asarray(second[0][PHONE_FEATURES_COLUMN], np.float32), narrow)


def _clip(audio, features=None):
    row = {"audio": audio, "emotion": "neutral", "intensity": 1, "speaker": "a", "blendshapes": np.zeros((60, 52))}
    if features is not None:
        row[PHONE_FEATURES_COLUMN] = features
    return row


def test_collator_pads_crops_and_stretches_cached_features(spoken):
    from esarm.data.augmentation import AudioAugmentationConfig, AudioAugmenter

    audio = spoken[0]
    features = phone_features(audio)
    batch = STACollator(speakers=["a"], phone_features=True)([_clip(audio, features), _clip(audio[:8000],
                                                              features[:51])])  # fmt: skip
    assert batch["phone_features"].shape == (2, len(features), NUM_PHONE_FEATURES)
    torch.testing.assert_close(batch["phone_features"][0], torch.from_numpy(features))
    assert batch["phone_features"][1, 51:].abs().sum() == 0
    cropped = STACollator(speakers=["a"], phone_features=True, max_seconds=1.0, seed=3)([_clip(audio, features)])
    assert cropped["phone_features"].shape[1] == cropped["attention_mask"].sum().item() // 160 + 1
    speed = AudioAugmenter(AudioAugmentationConfig(speed_probability=1.0, speed=(1.2, 1.2), reverb_probability=0.0,
                                                   band_limit_probability=0.0, codec_probability=0.0,
                                                   noise_probability=0.0, gain_probability=0.0))  # fmt: skip
    faster = STACollator(speakers=["a"], phone_features=True, augmentation=speed)([_clip(audio, features)])
    assert abs(faster["phone_features"].shape[1] - round(len(features) / 1.2)) <= 1
    with pytest.raises(ValueError, match="phone_features"):
        STACollator(speakers=["a"], phone_features=True)([_clip(audio)])


@pytest.fixture(scope="module")
def phone_model():
    torch.manual_seed(0)
    return ESARMSTAForGeneration(ESARMSTAConfig.tiny(audio_front_end="log_mel+phones")).eval()


@pytest.mark.parametrize("front_end", ["phones", "log_mel+phones"])
def test_model_decodes_the_features_the_processor_gives(spoken, front_end):
    """Cached (processor) and decoded-in-the-model phone features give the same animation; the phone path
    changes it."""
    torch.manual_seed(0)
    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny(audio_front_end=front_end)).eval()
    inputs = ESARMProcessor(fps=model.config.fps, phone_features=True)(spoken[0], sampling_rate=16000)
    assert inputs["phone_features"].shape == (1, len(spoken[0]) // 160 + 1, NUM_PHONE_FEATURES)
    with torch.no_grad():
        decoded = model.generate(inputs["input_values"], emotion_ids=torch.tensor([0]))
        cached = model.generate(inputs["input_values"], emotion_ids=torch.tensor([0]),
                                phone_features=inputs["phone_features"])  # fmt: skip
        silent = model.generate(inputs["input_values"], emotion_ids=torch.tensor([0]),
                                phone_features=torch.zeros_like(inputs["phone_features"]))  # fmt: skip
    torch.testing.assert_close(decoded.blendshapes, cached.blendshapes, rtol=0, atol=0)
    assert not torch.equal(decoded.motion_tokens, silent.motion_tokens) or not torch.allclose(
        decoded.blendshapes, silent.blendshapes
    )


def test_score_column_is_heard_only_when_configured(spoken, phone_model):
    scored = ESARMSTAForGeneration(ESARMSTAConfig.tiny(audio_front_end="phones", phone_feature_set="one_hot+score"))
    assert scored.phones.convolutions[0].in_channels == NUM_PHONE_FEATURES
    assert phone_model.phones.convolutions[0].in_channels == len(PHONES)


def test_save_load_round_trip_keeps_features_and_animation(tmp_path, spoken, phone_model):
    processor = ESARMProcessor(fps=phone_model.config.fps, phone_features=True)
    phone_model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded_model = ESARMSTAForGeneration.from_pretrained(tmp_path).eval()
    loaded_processor = ESARMProcessor.from_pretrained(tmp_path)
    assert loaded_processor.phone_features and loaded_model.config.audio_front_end == "log_mel+phones"
    before, after = processor(spoken[0], sampling_rate=16000), loaded_processor(spoken[0], sampling_rate=16000)
    torch.testing.assert_close(before["phone_features"], after["phone_features"], rtol=0, atol=0)
    with torch.no_grad():
        expected = phone_model.generate(before["input_values"], emotion_ids=torch.tensor([0])).blendshapes
        got = loaded_model.generate(after["input_values"], emotion_ids=torch.tensor([0])).blendshapes
    torch.testing.assert_close(expected, got, rtol=0, atol=0)


def test_streaming_one_window_equals_offline(spoken, phone_model):
    """A window that holds the whole clip decodes the same phones as the offline call, so the frames are equal."""
    # Whole animation frames (3200 samples = 6 frames at 30 fps): a window ends on a frame, so a tail shorter than
    # one frame is not in it, and the per-utterance level normalisation of the log-mel and phone paths then differs
    # slightly from the offline call's (measured: 1 of 8 eSpeak renderings of this sentence, 26 samples past the
    # last frame, changed the animation; trimmed, 8 of 8 are equal).
    audio = spoken[0][: len(spoken[0]) // 3200 * 3200]
    animator = StreamingAnimator(phone_model, chunk_seconds=10.0, cpu_defaults=False, emotion="neutral")
    frames = np.concatenate([animator.push(audio[:7000]), animator.push(audio[7000:]), animator.flush()])
    inputs = ESARMProcessor(fps=phone_model.config.fps)(audio, sampling_rate=16000)
    with torch.no_grad():
        offline = phone_model.generate(inputs["input_values"], emotion_ids=torch.tensor([0])).blendshapes[0]
    np.testing.assert_allclose(frames, offline.numpy(), atol=1e-5)


def test_tail_features_decode_only_the_end(spoken):
    audio = spoken[0]
    np.testing.assert_array_equal(tail_phone_features(audio, 0), phone_features(audio)[1:])
    tail = tail_phone_features(audio, 100)
    assert tail.shape == (len(audio) // 160 - 100, NUM_PHONE_FEATURES)
    # the audio before sample 16000 only sets the level: reversed (the same mean and variance), the tail is the same
    reversed_start = np.concatenate([audio[:16000][::-1], audio[16000:]])
    np.testing.assert_array_equal(tail, tail_phone_features(reversed_start, 100))
    assert not np.array_equal(phone_features(reversed_start)[:100], phone_features(audio)[:100])
    with pytest.raises(ValueError, match="first_frame must be in 0..") as error:
        tail_phone_features(audio[:1600], 10)
    assert "got 10" in str(error.value)


def test_live_windows_decode_their_end_and_keep_the_phones_before(spoken, phone_model):
    """With phone_decode_seconds a window decodes its last 0.6 s; the phones of its earlier frames are those the
    window before gave them."""
    audio = spoken[0]
    animator = StreamingAnimator.low_latency(phone_model, phone_decode_seconds=0.6, cpu_defaults=False)
    first = animator.window_phone_features(audio[:32000], 0)
    np.testing.assert_array_equal(first, phone_features(audio[:32000]))  # nothing known yet: all decoded
    second = animator.window_phone_features(audio[3200:35200], 3200)  # 20 frames of 10 ms later
    frames = len(second)
    known = frames - 1 - 60 + 1 + 30  # 60 frames decoded, the first half to settle
    np.testing.assert_array_equal(second[:known], first[20 : 20 + known])
    np.testing.assert_array_equal(second[known:], tail_phone_features(audio[3200:35200], frames - 61)[30:])
    with pytest.raises(ValueError, match="phone_decode_seconds must be None or >= 0.02 seconds, got 0"):
        StreamingAnimator(phone_model, phone_decode_seconds=0.0)


def test_live_stream_with_short_phone_decodes(spoken, phone_model):
    """A live stream that decodes each window's last second gives every frame, close to one decoding all."""
    audio = spoken[0][:48000]
    streams = {}
    for decode in (None, 1.0):
        animator = StreamingAnimator.low_latency(phone_model, phone_decode_seconds=decode, cpu_defaults=False)
        pieces = [animator.push(audio[i : i + 320]) for i in range(0, len(audio), 320)]
        streams[decode] = np.concatenate([*pieces, animator.flush()])
    assert streams[None].shape == streams[1.0].shape == (math.floor(len(audio) * 30 / 16000 + 0.5), 52)
    assert np.isfinite(streams[1.0]).all() and not np.array_equal(streams[None], streams[1.0])


REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys
    for name in sys.argv[2].split(","):
        sys.modules[name] = None
    import torch
    from transformers import AutoModel
    expected = torch.load(sys.argv[1] + "/expected.pt", weights_only=False)
    model = AutoModel.from_pretrained(sys.argv[1] + "/sta", trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    try:
        output = model.generate(expected["audio"], emotion_ids=torch.tensor([0]))
    except ImportError as error:
        print("ImportError:", error)
        raise SystemExit(0)
    assert torch.equal(output.blendshapes, expected["blendshapes"]), "blendshapes differ"
    print("OK")
    """
)


@pytest.mark.parametrize("blocked", ["esarm", "esarm,pocketsphinx"])
def test_saved_folder_with_remote_code(tmp_path, spoken, phone_model, blocked):
    """Without esarm the folder's own code decodes the phones; without pocketsphinx too, it says what to install."""
    audio = torch.from_numpy(((spoken[0] - spoken[0].mean()) / spoken[0].std()).astype(np.float32))[None]
    phone_model.save_pretrained(tmp_path / "sta")
    with torch.no_grad():
        blendshapes = phone_model.generate(audio, emotion_ids=torch.tensor([0])).blendshapes
    torch.save({"audio": audio, "blendshapes": blendshapes}, tmp_path / "expected.pt")
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH="")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", REMOTE_SCRIPT, str(tmp_path), blocked], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    if "pocketsphinx" in blocked:
        assert "pip install pocketsphinx" in result.stdout
    else:
        assert result.stdout.strip().endswith("OK")


@pytest.fixture(scope="module")
def real_clip():
    """A real person's recording of the shipped real-speech set (CMU ARCTIC slt), normalised as the processor does:
    ``[1, S]`` float32."""
    samples = load_audio(str(SET_FOLDER / "clips" / "arctic_slt_a0009.flac"), None, target_rate=16000)
    return torch.from_numpy(((samples - samples.mean()) / samples.std()).astype(np.float32))[None]


def _model_features(model, audio, phone_features=None):
    with torch.no_grad():
        return model.encode_audio(audio, phone_features=phone_features)[0]


def _features(audio, settings=None):
    return torch.from_numpy(phone_features(audio[0].numpy(), settings))[None]


def test_decoder_settings_are_checked():
    assert phonetic.decoder_settings() == phonetic.DECODER_SETTINGS
    assert phonetic.decoder_settings({"pbeam": 1, "lw": 2, "beam": 1e-20}) == {"lw": 2.0, "beam": 1e-20, "pbeam": 1.0}
    for bad, message in [
        ({"lw": 2.0}, r"settings must be None or a dict with exactly the keys \['lw', 'beam', 'pbeam'\].*got keys"),
        ({**EARLIER_SETTINGS, "wip": 0.5}, "exactly the keys"),
        ([2.0], "got \\[2.0\\]"),
        ({**EARLIER_SETTINGS, "lw": 0}, r"settings\['lw'\] must be a finite number > 0, got 0"),
        ({**EARLIER_SETTINGS, "beam": 2.0}, r"settings\['beam'\] must be a number in \(0, 1\], got 2.0"),
        ({**EARLIER_SETTINGS, "pbeam": True}, r"settings\['pbeam'\] must be a number in \(0, 1\], got True"),
        ({**EARLIER_SETTINGS, "lw": float("nan")}, "must be a finite number > 0, got nan"),
    ]:
        with pytest.raises(ValueError, match=message):
            phonetic.decoder_settings(bad)


def test_bad_phone_decoder_settings_are_rejected_where_they_enter():
    with pytest.raises(StrictDataclassError, match=r"phone_decoder_settings\['beam'\] must be a number in \(0, 1\]"):
        ESARMSTAConfig.tiny(audio_front_end="phones", phone_decoder_settings={**EARLIER_SETTINGS, "beam": 0.0})
    config = ESARMSTAConfig.tiny(audio_front_end="phones")
    with pytest.raises(StrictDataclassError, match="phone_decoder_settings must be None or a dict with exactly"):
        config.phone_decoder_settings = {"lw": 1.0}  # checked on assignment too
    with pytest.raises(ValueError, match=r"phone_decoder_settings\['lw'\] must be a finite number > 0, got -1"):
        ESARMProcessor(phone_features=True, phone_decoder_settings={**EARLIER_SETTINGS, "lw": -1})
    from datasets import Dataset

    with pytest.raises(ValueError, match="settings must be None or a dict with exactly the keys"):
        add_phone_features(Dataset.from_dict({"audio": [np.zeros(1600)]}), {"beam": 1e-5}, num_proc=1)


def test_model_decodes_with_its_settings_across_a_save_load_round_trip(tmp_path, real_clip):
    """A model whose config names other settings hears the phones of those settings, not the package's defaults,
    and keeps them through save_pretrained / from_pretrained."""
    torch.manual_seed(0)
    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny(audio_front_end="phones",
                                                      phone_decoder_settings=EARLIER_SETTINGS)).eval()  # fmt: skip
    earlier, default = _features(real_clip, EARLIER_SETTINGS), _features(real_clip)
    assert not torch.equal(earlier, default)  # the two settings hear other phones in this recording
    decoded = _model_features(model, real_clip)
    torch.testing.assert_close(decoded, _model_features(model, real_clip, earlier), rtol=0, atol=0)
    assert not torch.equal(decoded, _model_features(model, real_clip, default))
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["phone_decoder_settings"] == EARLIER_SETTINGS
    loaded = ESARMSTAForGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.phone_decoder_settings == EARLIER_SETTINGS
    torch.testing.assert_close(_model_features(loaded, real_clip), decoded, rtol=0, atol=0)


def test_config_saved_without_the_field_decodes_with_the_package_defaults(tmp_path, real_clip):
    """A config.json written before the field existed loads with None: the package's DECODER_SETTINGS."""
    torch.manual_seed(0)
    ESARMSTAForGeneration(ESARMSTAConfig.tiny(audio_front_end="phones")).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved.pop("phone_decoder_settings", None)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    model = ESARMSTAForGeneration.from_pretrained(tmp_path).eval()
    assert model.config.phone_decoder_settings is None
    decoded = _model_features(model, real_clip)
    torch.testing.assert_close(decoded, _model_features(model, real_clip, _features(real_clip)), rtol=0, atol=0)
    assert not torch.equal(decoded, _model_features(model, real_clip, _features(real_clip, EARLIER_SETTINGS)))


def test_processor_keeps_its_settings_and_the_pipeline_checks_them(tmp_path, real_clip):
    torch.manual_seed(0)
    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny(audio_front_end="phones",
                                                      phone_decoder_settings=EARLIER_SETTINGS)).eval()  # fmt: skip
    processor = ESARMProcessor(fps=model.config.fps, phone_features=True, phone_decoder_settings=EARLIER_SETTINGS)
    processor.save_pretrained(tmp_path)
    loaded = ESARMProcessor.from_pretrained(tmp_path)
    assert loaded.phone_decoder_settings == EARLIER_SETTINGS
    inputs = loaded(real_clip[0].numpy(), sampling_rate=16000)
    torch.testing.assert_close(inputs["phone_features"], _features(real_clip, EARLIER_SETTINGS), rtol=0, atol=0)
    animate = pipeline("speech-to-animation", model=model, processor=loaded, cpu_defaults=False)
    assert animate(real_clip[0].numpy())["blendshapes"].shape[1] == 52
    with pytest.raises(ValueError, match=r"processor.phone_decoder_settings must be the model's config.phone_decod"):
        pipeline("speech-to-animation", model=model, processor=ESARMProcessor(fps=model.config.fps,
                                                                              phone_features=True))  # fmt: skip


def test_streaming_windows_decode_with_the_model_settings(real_clip):
    torch.manual_seed(0)
    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny(audio_front_end="phones",
                                                      phone_decoder_settings=EARLIER_SETTINGS)).eval()  # fmt: skip
    audio = real_clip[0].numpy()
    animator = StreamingAnimator.low_latency(model, phone_decode_seconds=0.6, cpu_defaults=False)
    first = animator.window_phone_features(audio[:32000], 0)
    np.testing.assert_array_equal(first, phone_features(audio[:32000], EARLIER_SETTINGS))
    second = animator.window_phone_features(audio[3200:35200], 3200)
    tail = tail_phone_features(audio[3200:35200], len(second) - 61, EARLIER_SETTINGS)[30:]
    np.testing.assert_array_equal(second[-len(tail) :], tail)


REMOTE_FEATURES_SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    sys.modules["esarm"] = None
    import torch
    from transformers import AutoModel
    expected = torch.load(sys.argv[1] + "/expected.pt", weights_only=False)
    model = AutoModel.from_pretrained(sys.argv[1] + "/sta", trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    with torch.no_grad():
        features = model.encode_audio(expected["audio"])[0]
    assert torch.equal(features, expected["features"]), "features differ"
    print("OK", json.dumps(model.config.phone_decoder_settings, sort_keys=True))
    """
)


def test_saved_folder_with_remote_code_decodes_with_its_settings(tmp_path, real_clip):
    """Without esarm, the folder's own code decodes the phones with the settings its config names."""
    torch.manual_seed(0)
    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny(audio_front_end="phones",
                                                      phone_decoder_settings=EARLIER_SETTINGS)).eval()  # fmt: skip
    model.save_pretrained(tmp_path / "sta")
    features = _model_features(model, real_clip)
    assert not torch.equal(features, _model_features(model, real_clip, _features(real_clip)))
    torch.save({"audio": real_clip, "features": features}, tmp_path / "expected.pt")
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH="")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", REMOTE_FEATURES_SCRIPT, str(tmp_path)], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == f"OK {json.dumps(EARLIER_SETTINGS, sort_keys=True)}"
