"""One data path: ``load_split`` over save_to_disk folders, dataset repositories (the Hub's layout, read locally
through the same ``load_dataset`` call) and Hub ids; the FLAC audio column and its decoding without torchcodec."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import soundfile
from datasets import Audio, Dataset, DatasetDict, IterableDataset, List, Value

from esarm.data.collators import STACollator
from esarm.data.loading import dataset_reference, load_split, load_splits
from esarm.data.prepare.preparation import card_configs_yaml
from esarm.data.schema import audio_feature, clip_features, decode_audio_value, encode_audio_value, rows_to_dataset


def _speech_like(seconds: float = 2.0, rate: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))  # syllable-rate loudness
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12))
    return (0.2 * envelope * voiced + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def _rows(count: int = 4, speaker: str = "M001") -> list[dict]:
    emotions = ["neutral", "happy", "angry", "sad"]
    return [
        {"id": f"{speaker}_{i}", "speaker": speaker, "emotion": emotions[i % 4], "intensity": 1 + (i % 4 > 0),
         "sentence": "s1", "audio": _speech_like(1.0 + 0.25 * i, seed=i), "sampling_rate": 16000,
         "blendshapes": np.full((30 + 8 * i, 52), 0.1 * i, np.float32), "fps": 30.0}
        for i in range(count)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def corpus() -> DatasetDict:
    return DatasetDict(
        {split: rows_to_dataset(_rows(speaker=speaker), clip_features())
         for split, speaker in (("train", "M001"), ("validation", "W002"), ("test", "M003"))}
    )  # fmt: skip


@pytest.fixture(scope="module")
def repository(corpus, tmp_path_factory):
    """A dataset repository as prepare-mead writes it and the Hub serves it: card with configs + parquet shards."""
    folder = tmp_path_factory.mktemp("repository")
    files = []
    for split, dataset in corpus.items():
        name = f"data/{split}-00000-of-00001.parquet"
        (folder / "data").mkdir(exist_ok=True)
        dataset.to_parquet(str(folder / name))
        files.append(name)
    (folder / "README.md").write_text(f"---\n{card_configs_yaml({'files': files})}\n---\n# a corpus\n")
    return folder


# ------------------------------------------------------------------------------------------------- audio column
def test_flac_round_trip_is_16_bit_exact_and_smaller_than_float32():
    audio = _speech_like(3.0)
    value = encode_audio_value(audio)
    assert set(value) == {"bytes", "path"} and value["bytes"][:4] == b"fLaC"
    decoded = decode_audio_value(value)
    assert decoded.dtype == np.float32 and decoded.shape == audio.shape
    assert np.abs(decoded - audio).max() <= 1 / 32768 + 1e-7  # 16-bit quantisation, nothing more
    assert len(value["bytes"]) < audio.nbytes / 2


def test_decode_accepts_every_layout_of_an_audio_value(tmp_path):
    audio = _speech_like(1.0)
    # float samples (corpora written before the FLAC column), as a list and as an array
    np.testing.assert_array_equal(decode_audio_value(audio.tolist()), audio)
    np.testing.assert_array_equal(decode_audio_value(audio), audio)
    # raw encoded bytes and a file path (datasets.Audio storage with decode=False), at another rate: resampled
    buffer = io.BytesIO()
    soundfile.write(buffer, audio[::2], 8000, format="WAV")
    assert len(decode_audio_value(buffer.getvalue())) == len(audio)
    soundfile.write(tmp_path / "clip.flac", np.stack([audio, audio], axis=1), 16000)  # stereo -> mono
    np.testing.assert_allclose(decode_audio_value({"bytes": None, "path": str(tmp_path / "clip.flac")}), audio,
                               atol=2 / 32768)  # fmt: skip
    # a decoded datasets.Audio value
    decoded = decode_audio_value({"array": np.repeat(audio, 3), "sampling_rate": 48000})
    assert decoded.dtype == np.float32 and len(decoded) == len(audio)
    with pytest.raises(ValueError, match="'bytes', 'path' or 'array', got the keys"):
        decode_audio_value({"bytes": None, "path": None})
    with pytest.raises(ValueError, match=r"1-D float samples or encoded audio, got shape \(2, 3\)"):
        decode_audio_value(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"samples must be 1-D mono audio, got shape \(2, 3\)"):
        encode_audio_value(np.zeros((2, 3)))


def test_samples_outside_the_unit_range_are_clipped_with_a_warning(caplog):
    audio = np.array([0.0, 1.5, -2.0, 0.5], np.float32)
    with caplog.at_level(logging.WARNING, logger="esarm.data.schema"):
        decoded = decode_audio_value(encode_audio_value(audio))
    assert "clipping 2 of 4 samples" in caplog.text
    np.testing.assert_allclose(decoded, [0.0, 1.0, -1.0, 0.5], atol=1 / 32768)


def test_rows_to_dataset_stores_flac_and_the_collator_decodes_it(corpus):
    train = corpus["train"]
    assert train.features["audio"] == audio_feature()
    row = train[1]
    assert isinstance(row["audio"]["bytes"], bytes)
    batch = STACollator(speakers=["M001"], normalize=False)([train[0], train[1]])
    expected = decode_audio_value(row["audio"])
    np.testing.assert_array_equal(batch["input_values"][1, : len(expected)].numpy(), expected)
    assert int(batch["attention_mask"][1].sum()) == len(expected) == 20000


def test_a_float_list_corpus_written_before_flac_still_trains(tmp_path):
    features = clip_features()
    features["audio"] = List(Value("float32"))
    old = Dataset.from_list([{**r, "audio": r["audio"].tolist(), "blendshapes": r["blendshapes"].tolist()}
                             for r in _rows(2)], features=features)  # fmt: skip
    DatasetDict({"train": old}).save_to_disk(str(tmp_path / "old"))
    train = load_split(tmp_path / "old", "train")
    batch = STACollator(speakers=["M001"], normalize=False)([train[0], train[1]])
    np.testing.assert_allclose(batch["input_values"][0, :16000].numpy(), _rows(1)[0]["audio"])


# ------------------------------------------------------------------------------------------------- load_split
def test_save_to_disk_folders(corpus, tmp_path):
    corpus.save_to_disk(str(tmp_path / "dict"))
    assert load_split(tmp_path / "dict", "validation")["speaker"] == ["W002"] * 4
    assert sorted(load_splits(tmp_path / "dict")) == ["test", "train", "validation"]
    corpus["test"].save_to_disk(str(tmp_path / "single"))
    assert load_split(str(tmp_path / "single"), "whatever").num_rows == 4  # a Dataset has no splits
    assert list(load_splits(tmp_path / "single")) == ["train"]
    streamed = load_split(tmp_path / "dict", "train", streaming=True)
    assert isinstance(streamed, IterableDataset)
    assert [r["id"] for r in streamed] == corpus["train"]["id"]


def test_dataset_repository_folder_loads_every_split_like_the_hub(corpus, repository):
    for split in ("train", "validation", "test"):
        loaded = load_split(repository, split)
        assert loaded.features == corpus[split].features  # Array2D and the audio struct survive parquet
        assert loaded["id"] == corpus[split]["id"]
        np.testing.assert_array_equal(
            decode_audio_value(loaded[2]["audio"]), decode_audio_value(corpus[split][2]["audio"])
        )
    streamed = load_split(str(repository), "test", streaming=True)
    assert isinstance(streamed, IterableDataset)
    first = next(iter(streamed))
    assert first["id"] == "M003_0" and len(decode_audio_value(first["audio"])) == 16000


def test_a_datasets_audio_column_is_read_without_torchcodec(corpus, tmp_path):
    # a Hub corpus declared with datasets.Audio: decoding it the datasets way would need torchcodec
    hub_like = corpus["train"].cast_column("audio", Audio())
    folder = tmp_path / "audio_repo"
    (folder / "data").mkdir(parents=True)
    hub_like.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    train = load_split(folder, "train")
    assert isinstance(train.features["audio"], Audio) and not train.features["audio"].decode
    batch = STACollator(speakers=["M001"])([train[0], train[3]])
    assert batch["input_values"].shape == (2, 28000)


def test_errors_name_the_argument_the_expectation_and_the_value(repository, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"split must be one of \['test', 'train', 'validation'\] .* got 'dev'"):
        load_split(repository, "dev")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"dataset_name_or_path must be a save_to_disk folder .*: an empty folder"):
        load_split(tmp_path / "empty", "train")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"folder holding \['notes.txt'\]"):
        load_split(tmp_path / "other", "train")
    with pytest.raises(ValueError, match="corpus.dataset_path must be a dataset folder .* got the file"):
        load_split(tmp_path / "other" / "notes.txt", "train", argument="corpus.dataset_path")
    with pytest.raises(ValueError, match="an existing dataset folder or a Hub dataset id, got './missing'"):
        load_split("./missing", "train")
    with pytest.raises(ValueError, match=r"got None"):
        load_split(None, "train")
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="'nobody-here/no-such-corpus' is neither a local dataset folder nor a Hub"):
        load_split("nobody-here/no-such-corpus", "train")


def test_dataset_reference_is_absolute_for_folders_and_the_id_otherwise(repository, monkeypatch):
    monkeypatch.chdir(repository.parent)
    assert dataset_reference(repository.name) == str(repository.resolve())
    assert dataset_reference("user/mead-esarm") == "user/mead-esarm"
