"""MEAD and RAVDESS preparation end to end on miniature trees of real mp4 / m4a files (PyAV-encoded)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from esarm.blendshapes import ARKIT_NAMES, ARKIT_NAMES_ALPHABETICAL, NUM_BLENDSHAPES
from esarm.data import (
    SyntheticCorpusConfig,
    find_mead_clips,
    generate_synthetic_corpus,
    load_prepared,
    mead_test_clips,
    parse_ravdess_name,
    prepare_mead,
    prepare_ravdess,
    split_speakers,
)
from esarm.data.prepare.preparation import (
    MEDIAPIPE_TASK_ENV,
    ClipSource,
    MediaPipeBlendshapeExtractor,
    decode_audio,
    interpolate_missing,
)
from esarm.data.prepare.testing import (
    PixelBlendshapeExtractor,
    blendshapes_to_frames,
    encode_audio,
    encode_video,
    make_mead_tree,
    make_ravdess_tree,
)
from esarm.data.schema import decode_audio_value


@pytest.fixture(scope="module")
def rows():
    """Synthetic clips: 3 speakers (M001, W002, M003), 2 sentences, neutral + happy at levels 1 and 3."""
    config = SyntheticCorpusConfig.micro(emotions=("neutral", "happy"), intensities=(1, 3))
    corpus = generate_synthetic_corpus(config, progress=False)
    return [row for split in corpus.values() for row in split]


@pytest.fixture(scope="module")
def mead_root(rows, tmp_path_factory):
    root = tmp_path_factory.mktemp("mead")
    make_mead_tree(root, rows)
    speaker = rows[0]["speaker"]
    good = next(root.glob(f"{speaker}/video/front/happy/level_1/001.mp4"))
    blendshapes = np.full((40, NUM_BLENDSHAPES), 0.3, np.float32)
    # bad names: a level that does not exist, neutral above level 1, an unknown emotion, a bad speaker folder
    for bad in ("happy/level_4/001.mp4", "neutral/level_2/001.mp4", "joy/level_1/001.mp4", "happy/level_1/1.mp4"):
        path = root / speaker / "video" / "front" / bad
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(good.read_bytes())
    (root / "X01" / "video").mkdir(parents=True)
    # a video without audio, an audio without video
    encode_video(root / speaker / "video/front/happy/level_3/009.mp4", blendshapes_to_frames(blendshapes))
    encode_audio(root / speaker / "audio/happy/level_3/008.m4a", np.zeros(16000, np.float32))
    # a corrupt video and a clip where the face is missing in most frames
    (root / speaker / "video/front/happy/level_3/007.mp4").write_bytes(b"not a video")
    encode_audio(root / speaker / "audio/happy/level_3/007.m4a", np.zeros(16000, np.float32))
    mostly_found = np.arange(40) % 4 != 0  # a quarter of the frames without a face
    encode_video(root / speaker / "video/front/happy/level_3/006.mp4", blendshapes_to_frames(blendshapes, mostly_found))
    encode_audio(root / speaker / "audio/happy/level_3/006.m4a", np.zeros(int(40 / 30 * 16000), np.float32))
    # a few frames without a face: interpolated
    found = np.ones(40, bool)
    found[10:13] = False
    ramp = np.linspace(0, 1, 40, dtype=np.float32)[:, None].repeat(NUM_BLENDSHAPES, 1)
    encode_video(root / speaker / "video/front/happy/level_3/005.mp4", blendshapes_to_frames(ramp, found))
    encode_audio(root / speaker / "audio/happy/level_3/005.m4a", np.zeros(int(40 / 30 * 16000), np.float32))
    return root


NUM_GOOD_MEAD = 3 * 2 * 3 + 1  # speakers x sentences x (neutral, happy 1, happy 3) + the interpolated clip


def test_find_mead_clips_reports_files_that_do_not_parse(mead_root):
    clips, unparsed = find_mead_clips(mead_root)
    assert len(clips) == NUM_GOOD_MEAD + 2  # + the corrupt clip and the mostly-faceless clip
    reasons = {Path(u.path).relative_to(mead_root).as_posix(): u.reason for u in unparsed}
    assert "level_1, level_2 or level_3" in reasons["M001/video/front/happy/level_4/001.mp4"]
    assert "only at level_1" in reasons["M001/video/front/neutral/level_2/001.mp4"]
    assert "emotion must be one of" in reasons["M001/video/front/joy/level_1/001.mp4"]
    assert "three digits" in reasons["M001/video/front/happy/level_1/1.mp4"]
    assert "M### or W###" in reasons["X01"]
    assert "no matching audio" in reasons["M001/video/front/happy/level_3/009.mp4"]
    assert "no matching video" in reasons["M001/audio/happy/level_3/008.m4a"]
    clip = next(c for c in clips if c.id == "W002_happy_level_3_002")
    assert (clip.speaker, clip.emotion, clip.intensity, clip.sentence) == ("W002", "happy", 3, "happy_002")


def test_prepare_mead_end_to_end_then_resume(mead_root, rows, tmp_path):
    output = tmp_path / "mead"
    result = prepare_mead(mead_root, output, extractor=PixelBlendshapeExtractor(), progress=False)
    assert result.num_clips == NUM_GOOD_MEAD and result.processed == NUM_GOOD_MEAD + 2
    assert set(result.rejected) == {"M001_happy_level_3_007", "M001_happy_level_3_006"}
    assert "cannot decode" in result.rejected["M001_happy_level_3_007"]
    assert "no face in 10 of 40 frames" in result.rejected["M001_happy_level_3_006"]
    assert result.missing_frames == 3

    # speaker splits: disjoint, published, and the dataset follows them
    splits = json.loads((output / "splits.json").read_text())
    assert sorted(sum(splits.values(), [])) == ["M001", "M003", "W002"]
    assert all(len(names) == 1 for names in splits.values())
    dataset = load_prepared(output)
    for split, names in splits.items():
        assert set(dataset[split]["speaker"]) == set(names)
    assert sum(dataset.num_rows.values()) == NUM_GOOD_MEAD
    card = (output / "README.md").read_text()
    assert "path: data/train-*.parquet" in card and "MEAD" in card

    # blendshapes survive video coding and extraction; audio is 16 kHz and aligned to the frames
    truth = {r["id"].replace("_level_", "_level_"): r for r in rows}
    for row in dataset["train"]:
        if row["id"] not in truth:
            continue
        expected = np.asarray(truth[row["id"]]["blendshapes"])
        got = np.asarray(row["blendshapes"])
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 0.03
        assert abs(len(decode_audio_value(row["audio"])) - len(got) / row["fps"] * 16000) <= 1
        assert row["sampling_rate"] == 16000 and row["fps"] == 30.0
    ramp = [r for split in dataset.values() for r in split if r["id"] == "M001_happy_level_3_005"][0]
    np.testing.assert_allclose(np.asarray(ramp["blendshapes"])[10:13, 0], np.linspace(0, 1, 40)[10:13], atol=0.03)

    # resume: nothing to process, nothing rewritten
    stamps = {p: p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file()}
    again = prepare_mead(mead_root, output, extractor=PixelBlendshapeExtractor(), progress=False)
    assert again.processed == 0 and again.num_clips == NUM_GOOD_MEAD
    assert {p: p.stat().st_mtime_ns for p in output.rglob("*") if p.is_file()} == stamps

    # a lost clip is redone alone
    next((output / ".cache/clips").glob("W002_neutral_level_1_001.npz")).unlink()
    assert prepare_mead(mead_root, output, extractor=PixelBlendshapeExtractor(), progress=False).processed == 1


def test_max_clips_and_overwrite(mead_root, tmp_path):
    output = tmp_path / "mead"
    first = prepare_mead(mead_root, output, extractor=PixelBlendshapeExtractor(), max_clips=3, progress=False)
    assert first.processed == 3 and first.num_clips == 3
    assert "3 clips" in str(first)
    again = prepare_mead(
        mead_root, output, extractor=PixelBlendshapeExtractor(), max_clips=3, overwrite=True, progress=False
    )
    assert again.processed == 3


class _CrashingExtractor(PixelBlendshapeExtractor):
    def __init__(self, crash_on_call: int) -> None:
        self.calls, self.crash_on_call = 0, crash_on_call

    def __call__(self, frames, fps):
        self.calls += 1
        if self.calls == self.crash_on_call:
            raise RuntimeError("simulated crash")
        return super().__call__(frames, fps)


def test_a_crash_loses_only_the_clip_in_progress(mead_root, tmp_path):
    output = tmp_path / "mead"
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare_mead(mead_root, output, extractor=_CrashingExtractor(crash_on_call=5), progress=False)
    cached = list((output / ".cache/clips").glob("*"))
    assert len(cached) >= 4 - 1  # the corrupt video never reaches the extractor
    assert not list((output / ".cache/clips").glob(".*"))  # no half-written files
    result = prepare_mead(mead_root, output, extractor=PixelBlendshapeExtractor(), progress=False)
    assert result.processed == NUM_GOOD_MEAD + 2 - len(cached)
    assert result.num_clips == NUM_GOOD_MEAD


def test_prepare_mead_with_workers_and_mead_sentence_split(mead_root, tmp_path, monkeypatch):
    import esarm.data.prepare.mead

    # the miniature tree has 2 clips per (speaker, emotion, level): keep 1 for test instead of MEAD's 10 / 6
    monkeypatch.setattr(esarm.data.prepare.mead, "MEAD_TEST_LAST", {"neutral": 1, "other": 1})
    result = prepare_mead(
        mead_root, tmp_path / "mead", extractor=PixelBlendshapeExtractor(), split_by="sentence", num_workers=2,
        progress=False,
    )  # fmt: skip
    assert result.num_clips == NUM_GOOD_MEAD
    clips, _ = find_mead_clips(mead_root)
    test_ids = mead_test_clips(clips)
    dataset = load_prepared(tmp_path / "mead")
    assert set(dataset) == {"train", "test"}
    assert set(dataset["test"]["id"]) == test_ids - set(result.rejected)
    assert all(i.endswith("_002") or i.endswith("_007") for i in test_ids)
    assert set(dataset["train"]["id"]).isdisjoint(test_ids)
    assert json.loads((tmp_path / "mead" / "splits.json").read_text())["test"] == sorted(test_ids)


def test_mead_test_split_takes_the_last_clips():
    clips = [
        ClipSource(f"M003_{e}_level_{k}_{n:03d}", "M003", e, k, "", "", "", {"number": f"{n:03d}"})
        for e, k, count in (("neutral", 1, 40), ("angry", 2, 30))
        for n in range(1, count + 1)
    ]
    test = mead_test_clips(clips)
    assert {c for c in test if "neutral" in c} == {f"M003_neutral_level_1_{n:03d}" for n in range(31, 41)}
    assert {c for c in test if "angry" in c} == {f"M003_angry_level_2_{n:03d}" for n in range(25, 31)}


def test_split_speakers_is_deterministic_and_balanced():
    speakers = [f"M{i:03d}" for i in range(1, 31)] + [f"W{i:03d}" for i in range(1, 31)]
    splits = split_speakers(speakers, 0.1, 0.1, seed=0, group=lambda s: s[0])
    assert splits == split_speakers(list(reversed(speakers)), 0.1, 0.1, seed=0, group=lambda s: s[0])
    assert [len(splits[k]) for k in ("train", "validation", "test")] == [48, 6, 6]
    assert {s[0] for s in splits["test"]} == {"M", "W"}
    assert sorted(sum(splits.values(), [])) == sorted(speakers)
    with pytest.raises(ValueError, match="test_fraction"):
        split_speakers(speakers, 0.5, 0.6)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("03-01-06-01-02-01-12", None),
        ("01-01-01-02-01-01-01.mp4", "neutral has no strong"),
        ("04-01-01-01-01-01-01.mp4", "modality"),
        ("01-01-09-01-01-01-01.mp4", "emotion"),
        ("01-01-03-01-03-01-01.mp4", "statement"),
        ("01-01-03-01-01-01-25.mp4", "actor"),
        ("01-01-03-01.mp4", "seven two-digit fields"),
    ],
)
def test_parse_ravdess_name(name, message):
    if message is None:
        parsed = parse_ravdess_name(name)
        assert (parsed.modality, parsed.vocal_channel, parsed.emotion, parsed.intensity) == (
            "audio-only", "speech", "fearful", "normal")  # fmt: skip
        assert (parsed.statement, parsed.repetition, parsed.actor, parsed.sex) == ("02", 1, 12, "W")
    else:
        with pytest.raises(ValueError, match=message):
            parse_ravdess_name(name)


@pytest.fixture(scope="module")
def ravdess_root(rows, tmp_path_factory):
    root = tmp_path_factory.mktemp("ravdess")
    actors = {"M001": 1, "W002": 2, "M003": 3}
    make_ravdess_tree(root, [r for r in rows if r["intensity"] in (1, 3)], actors)
    some = next(root.glob("Actor_01/*.mp4"))
    (root / "Actor_01" / "01-02-03-01-01-01-01.mp4").write_bytes(some.read_bytes())  # song
    (root / "Actor_01" / "03-01-03-01-01-01-01.wav").write_bytes(b"RIFF")  # audio-only
    (root / "Actor_01" / "01-01-02-01-01-01-01.mp4").write_bytes(some.read_bytes())  # calm
    (root / "Actor_01" / "01-01-03-01-01-01-02.mp4").write_bytes(some.read_bytes())  # actor 02 in Actor_01
    (root / "Actor_01" / "notes.txt").write_text("x")
    return root


def test_prepare_ravdess_end_to_end(ravdess_root, tmp_path):
    output = tmp_path / "ravdess"
    result = prepare_ravdess(ravdess_root, output, extractor=PixelBlendshapeExtractor(), progress=False)
    # 3 actors x 2 sentences x (neutral, happy normal, happy strong) -> statements 01 and 02 differ per sentence
    assert result.num_clips == 18 and not result.rejected
    reasons = " | ".join(u.reason for u in result.unparsed)
    assert "song" in reasons and "audio-only" in reasons and "calm" in reasons and "Actor_02/" in reasons
    assert "seven two-digit fields" in reasons
    dataset = load_prepared(output)
    rows = [r for split in dataset.values() for r in split]
    assert {r["speaker"] for r in rows} == {"A01", "A02", "A03"}
    assert {(r["emotion"], r["intensity"]) for r in rows} == {("neutral", 1), ("happy", 2), ("happy", 3)}
    assert {r["sentence"] for r in rows} == {"Kids are talking by the door.", "Dogs are sitting by the door."}
    for row in rows:
        assert abs(len(decode_audio_value(row["audio"])) - len(row["blendshapes"]) / row["fps"] * 16000) <= 1
    assert prepare_ravdess(ravdess_root, output, extractor=PixelBlendshapeExtractor(), progress=False).processed == 0

    with_calm = prepare_ravdess(ravdess_root, tmp_path / "calm", extractor=PixelBlendshapeExtractor(), calm="neutral",
                                progress=False)  # fmt: skip
    assert with_calm.num_clips == 19


def test_interpolate_missing_fills_gaps_linearly():
    values = np.zeros((5, 2), np.float32)
    values[:, 0] = [0, 9, 9, 3, 4]
    found = np.array([True, False, False, True, True])
    filled = interpolate_missing(values, found)
    np.testing.assert_allclose(filled[:, 0], [0, 1, 2, 3, 4])


def test_decode_audio_resamples_to_16k_mono(tmp_path):
    tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32) * 0.5
    path = encode_audio(tmp_path / "tone.m4a", tone, sampling_rate=44100)
    audio = decode_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000) < 1200
    spectrum = np.abs(np.fft.rfft(audio[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 5


def test_mediapipe_extractor_requires_a_task_file(tmp_path, monkeypatch):
    monkeypatch.delenv(MEDIAPIPE_TASK_ENV, raising=False)
    with pytest.raises(ValueError, match="model_asset_path"):
        MediaPipeBlendshapeExtractor(download=False)
    with pytest.raises(ValueError, match="existing .task file"):
        MediaPipeBlendshapeExtractor(tmp_path / "missing.task")


def test_mediapipe_extractor_on_real_video(mead_root):
    pytest.importorskip("mediapipe", reason="MediaPipe is not installed (pip install 'esarm[mead]')")
    task = os.environ.get(MEDIAPIPE_TASK_ENV)
    if not task or not Path(task).is_file():
        pytest.skip(f"set {MEDIAPIPE_TASK_ENV} to MediaPipe's face_landmarker.task to run the real extractor")
    from esarm.data.prepare.preparation import decode_video

    frames, fps = decode_video(next(mead_root.glob("M001/video/front/neutral/level_1/*.mp4")))
    values, found = MediaPipeBlendshapeExtractor(task)(frames, fps)
    # block images have no face: the extractor must say so rather than invent coefficients
    assert values.shape == (len(frames), NUM_BLENDSHAPES) and not found.any()
    assert ARKIT_NAMES_ALPHABETICAL[-1] == "tongueOut" and ARKIT_NAMES[-1] == "tongueOut"


def test_push_to_hub_uploads_the_folder_without_the_cache(mead_root, tmp_path, monkeypatch):
    import huggingface_hub

    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            calls["create"] = (repo_id, kwargs)

        def upload_folder(self, **kwargs):
            calls["upload"] = kwargs
            return "https://huggingface.co/datasets/" + kwargs["repo_id"]

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    prepare_mead(
        mead_root, tmp_path / "mead", extractor=PixelBlendshapeExtractor(), max_clips=2, push_to_hub="me/mead",
        progress=False,
    )  # fmt: skip
    assert calls["create"] == ("me/mead", {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert calls["upload"]["folder_path"] == str(tmp_path / "mead")
    assert ".cache/*" in calls["upload"]["ignore_patterns"]


# ----------------------------------------------------------------------------------- prepared MEAD into training
def test_prepared_mead_loads_every_split_and_trains_one_sta_batch(mead_root, tmp_path):
    import torch

    from esarm import ESARMSTAConfig, ESARMSTAForGeneration
    from esarm.data.collators import STACollator
    from esarm.data.loading import load_split
    from esarm.training.sta import motion_targets

    output = tmp_path / "mead"
    prepare_mead(mead_root, output, extractor=PixelBlendshapeExtractor(), progress=False)
    splits = json.loads((output / "splits.json").read_text())
    for split, speakers in splits.items():
        dataset = load_split(output, split)
        assert set(dataset["speaker"]) == set(speakers) and dataset.num_rows > 0
        assert isinstance(dataset[0]["audio"]["bytes"], bytes)  # stored as FLAC
    train = load_split(output, "train")
    torch.manual_seed(0)
    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny(num_speakers=len(splits["train"])))
    batch = STACollator(speakers=splits["train"], fps=30.0)([train[i] for i in range(3)])
    assert batch["input_values"].shape[0] == 3 and batch["blendshapes"].shape[-1] == NUM_BLENDSHAPES
    tokens, mask = motion_targets(model, batch["blendshapes"], batch["frame_mask"], batch["attention_mask"])
    inputs = {k: batch[k] for k in ("input_values", "attention_mask", "emotion_ids", "intensity_ids", "speaker_ids")}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    first = model(**inputs, motion_tokens=tokens, motion_mask=mask).loss
    first.backward()
    optimizer.step()
    optimizer.zero_grad()
    second = model(**inputs, motion_tokens=tokens, motion_mask=mask).loss
    assert torch.isfinite(first) and second.item() < first.item()


@pytest.mark.slow
def test_mead_tree_to_trained_pipeline_through_the_cli(mead_root, tmp_path):
    """A miniature MEAD tree -> ``esarm prepare-mead`` -> ``esarm pipeline`` (every stage, shrunk) -> report."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo / "src")}
    prepared = tmp_path / "mead"
    prepare = [sys.executable, "-m", "esarm.cli", "prepare-mead", str(mead_root), "--output-dir", str(prepared),
               "--extractor", "esarm.data.prepare.testing:PixelBlendshapeExtractor"]  # fmt: skip
    done = subprocess.run(prepare, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads((prepared / "report.json").read_text())["num_clips"] == NUM_GOOD_MEAD

    shrunk = [
        f"corpus.dataset_name_or_path={prepared}", "seed=0",
        "motion_prior.max_steps=4", "motion_prior.per_device_train_batch_size=4",
        "sta.max_steps=3", "sta.per_device_train_batch_size=2", "sta.warmup_steps=0",
        "sta.dataloader_num_workers=0", "demos.epsilons=[0.0, 1.0]", "demos.max_clips=4", "demos.num_rollouts=1",
        "reward.max_steps=2", "reward.per_device_train_batch_size=2",
        "rl.max_steps=1", "rl.per_device_train_batch_size=2", "rl.num_rollouts=2", "rl.max_eval_clips=2",
        "evaluation.max_clips=4", "evaluation.epsilons=[0.0, 1.0]",
        *(f"{stage}.{key}" for stage in ("motion_prior", "sta", "reward", "rl")
          for key in ("disable_tqdm=true", "save_steps=1000", "logging_steps=1")),
    ]  # fmt: skip
    run = tmp_path / "run"
    pipeline = [sys.executable, "-m", "esarm.cli", "pipeline", "--config", str(repo / "configs" / "tiny.yaml"),
                "--output-dir", str(run), "--set", *shrunk]  # fmt: skip
    done = subprocess.run(pipeline, env=env, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads((run / "pipeline_results.json").read_text())
    corpus = summary["stages"]["corpus"]
    assert corpus["dataset_name_or_path"] == str(prepared)
    assert (corpus["num_train"], corpus["num_validation"], corpus["num_test"]) == tuple(
        json.loads((prepared / "report.json").read_text())["split_sizes"][s] for s in ("train", "validation", "test")
    )
    assert set(summary["stages"]) == {"corpus", "motion_prior", "sta", "demos", "reward", "rl", "evaluation"}
    assert len(list(run.glob("*/esarm_stage_done.json"))) == 7  # every stage finished and marked done
    results = json.loads((run / "evaluation" / "results.json").read_text())
    assert results and (run / "evaluation" / "results.md").read_text().strip()


# ---- MediaPipe model download: pinned URL, sha256 checked when one is configured ---------------------------------


@pytest.fixture
def served_task(monkeypatch):
    """Replace only the network layer: every URL answers with the same bytes."""
    import hashlib
    import io

    from esarm import utils
    from esarm.data.prepare import extraction

    payload = b"face landmarker task bytes"
    urls = []

    def fake_urlopen(url, timeout):
        urls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(utils, "urlopen", fake_urlopen)
    monkeypatch.setattr(extraction, "urlopen", fake_urlopen)
    monkeypatch.delenv("ESARM_MEDIAPIPE_TASK_SHA256", raising=False)
    return {"sha256": hashlib.sha256(payload).hexdigest(), "urls": urls}


def test_face_landmarker_download_checks_a_configured_sha256(tmp_path, monkeypatch, served_task):
    from esarm.data.prepare.extraction import FACE_LANDMARKER_URL, download_face_landmarker

    assert "/latest/" not in FACE_LANDMARKER_URL and "/float16/1/" in FACE_LANDMARKER_URL
    monkeypatch.setenv("ESARM_MEDIAPIPE_TASK_SHA256", "0" * 64)
    assert download_face_landmarker(tmp_path) is None  # wrong checksum: refused, nothing kept
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv("ESARM_MEDIAPIPE_TASK_SHA256", served_task["sha256"])
    path = download_face_landmarker(tmp_path)
    assert Path(path).read_bytes() == b"face landmarker task bytes"
    assert served_task["urls"] == [FACE_LANDMARKER_URL] * 2


def test_face_landmarker_download_without_checksum_logs_the_sha256(tmp_path, caplog, served_task):
    from esarm.data.prepare.extraction import download_face_landmarker

    with caplog.at_level("WARNING", logger="esarm.data.prepare.extraction"):
        path = download_face_landmarker(tmp_path)
    assert Path(path).is_file() and served_task["sha256"] in caplog.text
    # a cached file that matches the configured checksum is used as it is
    assert download_face_landmarker(tmp_path, sha256=served_task["sha256"]) == path
    assert len(served_task["urls"]) == 1
