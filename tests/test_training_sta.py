"""Stage 2 (STA training): token targets from the frozen prior, clip pairing, length alignment, the
cross-reconstruction loss and the training entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from esarm.data.augmentation import AudioAugmentationConfig, AudioAugmenter
from esarm.data.collators import PHONE_CLASS_IDS, PartnerIndex, STACollator, normalize_audio, phone_class_ids
from esarm.data.loading import load_split
from esarm.data.phones import OPENNESS, frame_classes
from esarm.data.schema import decode_audio_value
from esarm.training.checkpoints import read_done_marker
from esarm.training.sta_config import ESARMSTATrainingConfig
from esarm.training.sta_trainer import (
    ESARMSTATrainer,
    align_content,
    build_sta_model,
    dtw_path,
    motion_targets,
    train_sta,
)


@pytest.fixture(scope="module")
def prior_path(tmp_path_factory):
    from esarm import ESARMMotionPrior, ESARMMotionPriorConfig

    path = tmp_path_factory.mktemp("prior")
    ESARMMotionPrior(ESARMMotionPriorConfig.tiny()).save_pretrained(path)
    return path


def _sta(prior_path, tmp_path, speakers=("M001",)):
    config = ESARMSTATrainingConfig(output_dir=str(tmp_path), motion_prior_name_or_path=str(prior_path))
    return build_sta_model(config, list(speakers))


def test_collator_builds_partner_pairs(micro_corpus):
    train = load_split(micro_corpus, "train")
    index = PartnerIndex(train)
    assert index.num_with_partner == len(train)  # every sentence is spoken in several emotions
    collator = STACollator(speakers=sorted(set(train["speaker"])), fps=30.0, partner_index=index, seed=0)
    rows = [{**train[i], "__index__": i} for i in range(4)]
    batch = collator(rows)
    assert batch["has_partner"].all()
    assert batch["partner_input_values"].shape[0] == 4
    assert (batch["partner_emotion_ids"] != batch["emotion_ids"]).all()
    assert torch.equal(batch["partner_speaker_ids"], batch["speaker_ids"])
    # partners are clips of the same speaker and sentence: find them by their normalised audio
    for i, row in enumerate(rows):
        length = int(batch["partner_attention_mask"][i].sum())
        partner_audio = batch["partner_input_values"][i, :length].numpy()
        audios = [decode_audio_value(train[j]["audio"]) for j in range(len(train))]
        matches = [j for j, audio in enumerate(audios) if len(audio) == length
                   and np.allclose(normalize_audio(audio), partner_audio, atol=1e-5)]  # fmt: skip
        assert matches and train[matches[0]]["sentence"] == row["sentence"]
        assert train[matches[0]]["speaker"] == row["speaker"] and train[matches[0]]["emotion"] != row["emotion"]
    # blendshapes are cut to the audio's duration and masked
    frames = batch["frame_mask"].sum(1)
    seconds = batch["attention_mask"].sum(1) / 16000
    assert torch.all((frames - seconds * 30).abs() <= 1)


def test_collator_ids_and_speaker_dropout():
    row = {"audio": np.random.randn(8000).astype(np.float32), "emotion": "sad", "intensity": 3, "speaker": "B"}
    batch = STACollator(speakers=["A", "B"])([row, {**row, "speaker": "C"}])
    assert batch["emotion_ids"].tolist() == [6, 6] and batch["intensity_ids"].tolist() == [2, 2]
    assert batch["speaker_ids"].tolist() == [2, 0]  # unknown speaker -> 0
    assert float(batch["input_values"][0].mean()) == pytest.approx(0.0, abs=1e-4)
    dropped = STACollator(speakers=["A", "B"], speaker_dropout=1.0)([row])
    assert dropped["speaker_ids"].tolist() == [0]
    with pytest.raises(ValueError, match="emotion must be one of"):
        STACollator()([{**row, "emotion": "bored"}])
    with pytest.raises(ValueError, match="speaker_dropout"):
        STACollator(speaker_dropout=2.0)


def test_collator_draws_differ_between_epochs_in_a_worker_process():
    # a DataLoader worker holds a copy of the collator made at the start of each epoch: without reseeding from the
    # worker's seed, every epoch would replay the same speaker-dropout draws
    row = {"audio": np.zeros(1600, dtype=np.float32), "emotion": "sad", "intensity": 3, "speaker": "B"}
    collator = STACollator(speakers=["A", "B"], speaker_dropout=0.5, seed=0)
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader([row] * 64, batch_size=64, collate_fn=collator, num_workers=1)
    epochs = [next(iter(loader))["speaker_ids"].tolist() for _ in range(2)]
    assert epochs[0] != epochs[1]
    assert 0 < epochs[0].count(0) < 64
    torch.manual_seed(0)  # reproducible for a seed
    assert next(iter(loader))["speaker_ids"].tolist() == epochs[0]


def test_motion_targets_match_the_prior_and_the_audio_grid(micro_corpus, prior_path, tmp_path):
    sta = _sta(prior_path, tmp_path)
    train = load_split(micro_corpus, "train")
    batch = STACollator(fps=sta.config.fps)([train[i] for i in range(3)])
    tokens, mask = motion_targets(sta, batch["blendshapes"], batch["frame_mask"], batch["attention_mask"])
    assert tokens.shape[:2] == mask.shape
    assert tokens.shape[1] == sta.num_motion_steps(batch["input_values"].shape[1])
    lengths = sta.num_motion_steps(batch["attention_mask"].sum(1))
    assert torch.all(mask.sum(1) <= lengths) and torch.all(mask.sum(1) >= lengths - 1)
    direct = sta.motion_prior.encode(batch["blendshapes"], batch["frame_mask"])
    for i in range(3):
        n = int(mask[i].sum())
        assert torch.equal(tokens[i, :n], direct[i, :n])
        assert int(tokens[i, n:].abs().sum()) == 0


def test_alignment_resample_and_dtw():
    path = dtw_path(np.eye(5), np.eye(5))
    assert path.tolist() == [0, 1, 2, 3, 4]
    stretched = np.repeat(np.eye(4), 2, axis=0)  # each step twice
    assert dtw_path(np.eye(4), stretched).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    content = torch.arange(6, dtype=torch.float32).view(1, 6, 1).repeat(1, 1, 2)
    out = align_content(content, torch.tensor([4]), torch.tensor([7]), 9)
    assert out.shape == (1, 9, 2)
    assert out[0, 0, 0] == 0 and out[0, 6, 0] == pytest.approx(3.0) and float(out[0, 7:].abs().sum()) == 0
    one_hot = torch.eye(4)[None] * torch.arange(1, 5)[None, :, None]  # step i: (i + 1) * e_i
    reference = torch.from_numpy(stretched).float()[None]
    warped = align_content(one_hot, torch.tensor([4]), torch.tensor([8]), 8, "dtw", reference)
    assert warped[0].sum(-1).tolist() == [1, 1, 2, 2, 3, 3, 4, 4]


def test_cross_reconstruction_loss_trains_content_and_emotion_branches(micro_corpus, prior_path, tmp_path):
    sta = _sta(prior_path, tmp_path, speakers=["M001"])
    train = load_split(micro_corpus, "train")
    collator = STACollator(speakers=["M001"], fps=sta.config.fps, partner_index=PartnerIndex(train))
    batch = collator([{**train[i], "__index__": i} for i in range(2)])
    trainer = ESARMSTATrainer.__new__(ESARMSTATrainer)
    trainer.cross_alignment = "resample"
    main = {k: batch[k] for k in ("input_values", "attention_mask", "emotion_ids", "intensity_ids", "speaker_ids")}
    tokens, token_mask = motion_targets(sta, batch["blendshapes"], batch["frame_mask"], batch["attention_mask"])
    outputs = sta(**main, motion_tokens=tokens, motion_mask=token_mask)
    loss = ESARMSTATrainer.cross_reconstruction_loss(trainer, sta, batch, outputs)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(np.log(sta.codebook_size), rel=0.5)  # untrained: near uniform
    loss.backward()
    for module in (sta.content_encoder, sta.emotion_encoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert all(p.grad is None for p in sta.motion_prior.parameters())


def test_train_sta_saves_model_processor_and_marker(micro_corpus, prior_path, tmp_path):
    from esarm import ESARMSTAForGeneration

    config = ESARMSTATrainingConfig(
        dataset_name_or_path=str(micro_corpus), motion_prior_name_or_path=str(prior_path), output_dir=str(tmp_path / "sta"),
        max_steps=3, per_device_train_batch_size=4, logging_steps=1, save_steps=3, disable_tqdm=True, use_cpu=True,
        cross_reconstruction_weight=0.5,
    )  # fmt: skip
    metrics = train_sta(config)
    assert metrics["train_steps"] == 3 and np.isfinite(metrics["eval_loss"])
    assert read_done_marker(tmp_path / "sta")["train_steps"] == 3
    model = ESARMSTAForGeneration.from_pretrained(tmp_path / "sta")
    assert model.config.num_speakers == len(set(load_split(micro_corpus, "train")["speaker"]))
    # the frozen prior was not changed by training
    from esarm import ESARMMotionPrior

    original = ESARMMotionPrior.from_pretrained(prior_path).state_dict()
    for key, value in model.motion_prior.state_dict().items():
        assert torch.equal(value, original[key]), key
    import json

    log = json.loads((tmp_path / "sta" / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    logged = {k for entry in log for k in entry}
    assert {"token_accuracy", "emotion_accuracy", "cross_reconstruction_loss"} <= logged


@pytest.mark.skipif(torch.accelerator.is_available(), reason="an accelerator keeps pinned memory")
def test_training_arguments_do_not_pin_memory_without_an_accelerator(tmp_path):
    assert ESARMSTATrainingConfig(output_dir=str(tmp_path)).dataloader_pin_memory is False


def test_phone_class_ids_follow_the_timings_and_the_model_classes():
    from esarm.audio_features import PHONE_CLASSES

    assert tuple(PHONE_CLASS_IDS) == PHONE_CLASSES == tuple(OPENNESS)
    phonemes, starts = ["_", "b", "a", "m", "i"], [0.0, 0.1, 0.2, 0.4, 0.5]
    ids = phone_class_ids(phonemes, starts, num_frames=21, fps=30.0)
    expected = [PHONE_CLASS_IDS[c] for c in frame_classes(phonemes, starts, 21 / 30.0, 30.0, 21)]
    assert ids.tolist() == expected
    assert ids[0] == PHONE_CLASS_IDS["pause"] and ids[7] == PHONE_CLASS_IDS["open"]  # frame 7 centre: 0.25 s
    # audio played twice as fast: every phoneme starts at half its time
    fast = phone_class_ids(phonemes, starts, num_frames=11, fps=30.0, speed=2.0)
    assert fast[3] == PHONE_CLASS_IDS["open"] and fast[7] == PHONE_CLASS_IDS["close"]  # 0.117 s: a; 0.25 s: i


def test_collator_adds_phone_classes_only_when_asked(micro_corpus):
    train = load_split(micro_corpus, "train")
    rows = [train[0], train[1]]
    assert "phone_classes" not in STACollator(speakers=["M001"])(rows)
    batch = STACollator(speakers=["M001"], phone_targets=True)(rows)
    phones = batch["phone_classes"]
    assert phones.shape == batch["frame_mask"].shape and phones.dtype == torch.long
    assert (phones[~batch["frame_mask"]] == -100).all() and (phones[batch["frame_mask"]] >= 0).all()
    num_frames = int(batch["frame_mask"][0].sum())
    row = rows[0]
    expected = phone_class_ids(row["phonemes"], row["phoneme_times"], num_frames, float(row["fps"]))
    assert phones[0, :num_frames].tolist() == expected.tolist()
    # crops cut the phone classes with the audio and the blendshapes
    cropped = STACollator(speakers=["M001"], phone_targets=True, max_seconds=0.5, seed=1)(rows)
    assert cropped["phone_classes"].shape == cropped["frame_mask"].shape == (2, 15)
    # a speed change shortens the phone timeline like the blendshapes
    speed_only = AudioAugmentationConfig.off()
    speed_only.speed_probability, speed_only.speed = 1.0, (1.5, 1.5)
    sped = STACollator(speakers=["M001"], phone_targets=True, augmentation=AudioAugmenter(speed_only))(rows)
    assert sped["phone_classes"].shape == sped["frame_mask"].shape
    assert sped["frame_mask"][0].sum() < batch["frame_mask"][0].sum()
    # rows without phoneme timings (real captures) give no targets
    bare = [{k: v for k, v in r.items() if k not in ("phonemes", "phoneme_times")} for r in rows]
    assert "phone_classes" not in STACollator(speakers=["M001"], phone_targets=True)(bare)


@pytest.mark.parametrize("mouth, augmentation", [("content", None), ("parallel", "default")])
def test_train_sta_with_log_mel_phone_loss_and_content_mouth(micro_corpus, prior_path, tmp_path, mouth, augmentation):
    from esarm import ESARMSTAForGeneration

    overrides = {"audio_front_end": "log_mel", "phone_loss_weight": 0.5, "mouth_conditioning": mouth,
                 "mouth_regression_weight": 1.0 if mouth == "parallel" else 0.0}  # fmt: skip
    config = ESARMSTATrainingConfig(
        dataset_name_or_path=str(micro_corpus), motion_prior_name_or_path=str(prior_path), output_dir=str(tmp_path / "sta"),
        max_steps=2, per_device_train_batch_size=4, logging_steps=1, save_steps=2, disable_tqdm=True, use_cpu=True,
        model_overrides=json.dumps(overrides), audio_augmentation=augmentation,
    )  # fmt: skip
    metrics = train_sta(config)
    assert np.isfinite(metrics["eval_phone_loss"]) and metrics["eval_phone_loss"] > 0
    if mouth == "parallel":
        assert np.isfinite(metrics["eval_mouth_regression_loss"])
    model = ESARMSTAForGeneration.from_pretrained(tmp_path / "sta")
    assert model.speech_encoder is None and model.phone_head is not None and model.mouth_transformer is not None
    assert model.mouth_transformer.causal == (mouth == "content")


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_shipped_configs_build_their_sta_model(name, tmp_path):
    """configs/<name>.yaml's `sta` section parses into the stage config and its model overrides into a valid STA
    config (a typo in a field name or value fails here, not after the corpus and the prior have been built)."""
    from pathlib import Path

    from esarm import ESARMSTAConfig
    from esarm.training.args import build_model_config, parse_stage_args

    path = Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml"
    config = parse_stage_args(ESARMSTATrainingConfig, section="sta", args=[str(path), "--output_dir", str(tmp_path)])
    model_config = build_model_config(ESARMSTAConfig, config.model_config, config.model_overrides)
    assert model_config.hidden_size == 64
    if name == "small":
        assert model_config.audio_front_end == "log_mel" and model_config.mouth_conditioning == "parallel"
        assert model_config.phone_loss_weight > 0 and config.augmentation_config() is not None


def test_audio_augmentation_field(tmp_path):
    """``audio_augmentation``: off by default, 'default' or a mapping of AudioAugmentationConfig fields; a wrong
    field or value fails when the config is built, naming the argument."""
    from esarm.data.augmentation import AudioAugmentationConfig

    def build(value):
        return ESARMSTATrainingConfig(output_dir=str(tmp_path), use_cpu=True, audio_augmentation=value)

    assert build(None).augmentation_config() is None
    assert build("default").augmentation_config() == AudioAugmentationConfig()
    custom = build('{"noise_probability": 0.9, "snr_db": [10, 20]}').augmentation_config()
    assert custom.noise_probability == 0.9 and custom.snr_db == (10.0, 20.0)
    assert build({"gain_probability": 0.0}).augmentation_config().gain_probability == 0.0
    for bad, message in (("loud", "audio_augmentation must be null, 'default' or a mapping"),
                         ('{"nois": 1}', "audio_augmentation: .*nois"),
                         ('{"noise_probability": 2}', "noise_probability must be in")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            build(bad)


@pytest.mark.parametrize("settings", [None, {"lw": 2.0, "beam": 1e-20, "pbeam": 1e-20}])
def test_train_sta_records_the_phone_decoder_settings_of_its_cache(micro_corpus, prior_path, tmp_path, settings):
    """A phonetic model is saved with the settings its training features were decoded with (the package's defaults
    when its config names none), and its processor with them; the training split's cache holds those settings'
    features."""
    import time

    from esarm import ESARMProcessor, ESARMSTAForGeneration
    from esarm.data.phone_features import PHONE_FEATURES_COLUMN, add_phone_features
    from esarm.phonetic import DECODER_SETTINGS, phone_features

    overrides = {"audio_front_end": "phones", "phone_decoder_settings": settings}
    config = ESARMSTATrainingConfig(
        dataset_name_or_path=str(micro_corpus), motion_prior_name_or_path=str(prior_path), output_dir=str(tmp_path / "sta"),
        max_steps=1, per_device_train_batch_size=2, logging_steps=1, save_steps=1, disable_tqdm=True, use_cpu=True,
        model_overrides=json.dumps(overrides), eval_split=None,
    )  # fmt: skip
    train_sta(config)
    trained = time.time()
    expected = DECODER_SETTINGS if settings is None else settings
    assert ESARMSTAForGeneration.from_pretrained(tmp_path / "sta").config.phone_decoder_settings == expected
    assert ESARMProcessor.from_pretrained(tmp_path / "sta").phone_decoder_settings == expected
    cached = add_phone_features(load_split(micro_corpus, "train"), expected)
    assert all(Path(f["filename"]).stat().st_mtime < trained for f in cached.cache_files)  # written by the training
    row = cached[0]
    np.testing.assert_array_equal(np.asarray(row[PHONE_FEATURES_COLUMN], np.float32),
                                  phone_features(decode_audio_value(row["audio"]), expected))  # fmt: skip
