"""The real-speech evaluation set: the shipped clips, their checksums and labels, and the builder."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import numpy as np
import pytest
import soundfile

from esarm.data import real_speech as R
from esarm.data.phones import OPENNESS, phone_class


def test_the_shipped_set_loads_with_labels_and_provenance():
    rows = R.load_real_speech_set(fps=25.0)
    manifest = R.read_manifest()
    assert len(rows) == manifest["num_clips"] == len(R.CLIPS)
    assert {r["speaker"] for r in rows} == set(manifest["speakers"]) and len(manifest["speakers"]) >= 5
    seconds = sum(len(r["audio"]) for r in rows) / R.SAMPLING_RATE
    assert abs(seconds - manifest["seconds"]) < 0.01 and seconds > 40
    for row, clip in zip(rows, manifest["clips"]):
        assert row["fps"] == 25.0 and row["sampling_rate"] == 16_000 and row["audio"].dtype == np.float32
        assert np.all(np.diff(row["phoneme_times"]) > 0) and len(row["phonemes"]) == len(row["phoneme_times"])
        assert row["phoneme_times"][-1] < len(row["audio"]) / 16_000
        assert all(phone_class(p) in OPENNESS for p in row["phonemes"])
        assert clip["source"]["licence"] and (R.SET_FOLDER / clip["source"]["licence_file"]).is_file()
        assert clip["labels"] in ("published", "pocketsphinx alignment")
    classes = {phone_class(p) for r in rows for p in r["phonemes"]}
    assert {"open", "mid", "close", "bilabial", "other", "pause"} <= classes  # every measure has frames to use
    assert [r["labels"] for r in rows].count("published") == 1  # arctic_a0009's published HTS labels
    assert 0.8 < manifest["aligner_agreement"]["arctic_slt_a0009"] <= 1.0


def test_a_clip_that_differs_from_its_checksum_is_refused(tmp_path):
    folder = tmp_path / "set"
    shutil.copytree(R.SET_FOLDER, folder)
    clip = R.read_manifest(folder)["clips"][0]
    samples, rate = soundfile.read(folder / clip["file"], dtype="int16")
    samples[100] += 1
    soundfile.write(folder / clip["file"], samples, rate, subtype="PCM_16", format="FLAC")
    with pytest.raises(ValueError, match=clip["file"]):
        R.load_real_speech_set(folder)
    with pytest.raises(FileNotFoundError, match="real-speech set"):
        R.load_real_speech_set(tmp_path)
    with pytest.raises(ValueError, match="fps"):
        R.load_real_speech_set(fps=0)


def test_hts_phone_labels_give_phones_and_starts_in_seconds():
    text = (
        "0 1300000 x^x-sil+hh=iy@x_x/A:0_0_0\n"
        "1300000 2050000 x^sil-hh+iy=t@1_2/A:0_0_0\n"
        "\n"
        "2050000 2700000 sil^hh-iy+t=er@2_1/A:0_0_0\n"
    )
    phones, starts = R.parse_hts_phone_labels(text)
    assert phones == ["sil", "hh", "iy"] and starts == [0.0, 0.13, 0.205]
    with pytest.raises(ValueError, match="line 2"):
        R.parse_hts_phone_labels("0 10 x^x-sil+hh\nnot a label\n")


def test_class_agreement_counts_frames_in_the_same_phone_class():
    # "a" (open) over [0, 0.5) then "m" (bilabial); the other labelling moves the boundary to 0.4 s: 10 of 100 frames.
    assert R.class_agreement((["a", "m"], [0.0, 0.5]), (["ɑ", "b"], [0.0, 0.4]), 1.0) == pytest.approx(0.9)
    assert R.class_agreement((["a"], [0.0]), (["a"], [0.0]), 0.3) == 1.0


def _archive(tmp_path, clip_row) -> R.Source:
    """A source archive holding one shipped clip as a WAV file and a licence, like the PyPI archives."""
    wav = io.BytesIO()
    soundfile.write(wav, (clip_row["audio"] * 32768).astype(np.int16), 16_000, subtype="PCM_16", format="WAV")
    path = tmp_path / "archives" / "demo-1.0.tar.gz"
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as archive:
        for name, data in (("demo-1.0/speech.wav", wav.getvalue()), ("demo-1.0/LICENSE", b"free for any use\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return R.Source("demo", "1.0", R.file_sha256(path), "free for any use", "demo-1.0/LICENSE")


def test_the_builder_aligns_writes_atomically_and_is_idempotent(tmp_path):
    pytest.importorskip("pocketsphinx")
    row = next(r for r in R.load_real_speech_set() if r["id"] == "pocketsphinx_goforward")
    source = _archive(tmp_path, row)
    clips = (R.ClipSpec("goforward", "demo", "demo-1.0/speech.wav", "someone", "Go forward, ten meters."),)
    folder = R.build_real_speech_set(tmp_path / "archives", tmp_path / "set", sources={"demo": source}, clips=clips)
    manifest = R.read_manifest(folder)
    clip = manifest["clips"][0]
    assert clip["arpabet"][1:5] == ["G", "OW", "F", "AO"] and clip["labels"] == "pocketsphinx alignment"
    assert (folder / "licenses" / "demo.txt").read_text() == "free for any use\n"
    (loaded,) = R.load_real_speech_set(folder)
    np.testing.assert_array_equal(loaded["audio"], row["audio"])  # lossless: the archive's int16 samples
    # The same inputs leave the set as it is; force rebuilds it in place, and no staging folder is left behind.
    before = (folder / R.MANIFEST).stat().st_mtime_ns
    R.build_real_speech_set(tmp_path / "archives", folder, sources={"demo": source}, clips=clips)
    assert (folder / R.MANIFEST).stat().st_mtime_ns == before
    R.build_real_speech_set(tmp_path / "archives", folder, force=True, sources={"demo": source}, clips=clips)
    assert json.loads((folder / R.MANIFEST).read_text())["clips"][0]["pcm_sha256"] == clip["pcm_sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archives", "set"]
    bad = R.Source("demo", "1.0", "0" * 64, "x", "demo-1.0/LICENSE")
    with pytest.raises(ValueError, match="SHA-256"):
        R.build_real_speech_set(tmp_path / "archives", tmp_path / "other", sources={"demo": bad}, clips=clips)
    with pytest.raises(FileNotFoundError, match="demo-1.0.tar.gz"):
        R.build_real_speech_set(tmp_path, tmp_path / "other", sources={"demo": source}, clips=clips)
    assert not (tmp_path / "other").exists()
