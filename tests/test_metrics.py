"""Metrics: hand-computed examples, the squared convention against torchmetrics, masks, pooling, bad inputs,
the expression classifier and the evaluate-loadable modules."""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
import pytest
import torch

from esarm.blendshapes import BLENDSHAPE_INDEX, EMOTIONS
from esarm.evaluation import metrics as M
from esarm.evaluation.classifier import ExpressionClassifier
from esarm.rig import FaceRig

JAW, BROW, BLINK, SMILE = (BLENDSHAPE_INDEX[n] for n in ("jawOpen", "browInnerUp", "eyeBlinkLeft", "mouthSmileLeft"))


@pytest.fixture
def hand_rig() -> FaceRig:
    """Four vertices on a 100 mm face. jawOpen moves lip vertex 0 by 10 mm and lip vertex 1 by 5 mm (down);
    browInnerUp moves eye vertex 2 up by 4 mm; eyeBlinkLeft moves vertex 3 (outside both regions) by 3 mm."""
    neutral = np.array([[0, -40, 0], [10, -40, 0], [0, 40, 0], [50, 20, 10]], dtype=np.float32)
    deltas = np.zeros((52, 4, 3), dtype=np.float32)
    deltas[JAW, 0] = (0, -10, 0)
    deltas[JAW, 1] = (0, -5, 0)
    deltas[BROW, 2] = (0, 4, 0)
    deltas[BLINK, 3] = (0, -3, 0)
    return FaceRig(
        neutral=neutral, deltas=deltas, faces=np.zeros((0, 3)), regions={"lips": [0, 1], "eye_forehead": [2]}
    )


def frames(**weights_per_frame) -> np.ndarray:
    """[T, 52] with the given per-frame values of named blendshapes."""
    length = len(next(iter(weights_per_frame.values())))
    out = np.zeros((length, 52))
    for name, values in weights_per_frame.items():
        out[:, BLENDSHAPE_INDEX[name]] = values
    return out


# ---------------------------------------------------------------------------------------------------------------------
# hand-computed values


def test_lve_hand_computed(hand_rig):
    pred = frames(jawOpen=[1.0, 0.5, 0.0])
    target = frames(jawOpen=[0.0, 0.0, 0.0])
    # per-frame max lip error: 10 mm, 5 mm, 0 mm
    assert M.lve(pred, target, hand_rig) == pytest.approx((10 + 5 + 0) / 3)
    assert M.lve(pred, target, hand_rig, squared=True) == pytest.approx((100 + 25 + 0) / 3)
    assert M.lve_squared(pred, target, hand_rig) == pytest.approx(125 / 3)
    np.testing.assert_allclose(M.lve(pred, target, hand_rig, reduction="frames"), [10, 5, 0])
    assert M.eve(pred, target, hand_rig) == 0.0


def test_eve_mve_mae_hand_computed(hand_rig):
    pred = frames(browInnerUp=[0.5, 1.0], eyeBlinkLeft=[1.0, 0.0])
    target = frames(browInnerUp=[0.0, 0.0], eyeBlinkLeft=[0.0, 0.0])
    assert M.eve(pred, target, hand_rig) == pytest.approx((2 + 4) / 2)
    assert M.eve_squared(pred, target, hand_rig) == pytest.approx((4 + 16) / 2)
    assert M.lve(pred, target, hand_rig) == 0.0
    # MVE: frame 1: vertex 2 moves 2 mm and vertex 3 3 mm -> (2 + 3) / 4; frame 2: 4 / 4
    assert M.mve(pred, target, hand_rig) == pytest.approx(((2 + 3) / 4 + 4 / 4) / 2)
    assert M.blendshape_mae(pred, target) == pytest.approx((1.5 / 52 + 1.0 / 52) / 2)


def test_fdd_hand_computed_sign_kept(hand_rig):
    moving = frames(browInnerUp=[0.0, 1.0])  # eye vertex squared motion norm: 0, 16 mm² -> std 8
    still = frames(browInnerUp=[0.5, 0.5])  # 4, 4 -> std 0
    assert M.fdd(still, moving, hand_rig) == pytest.approx(8.0)  # prediction too still: positive
    assert M.fdd(moving, still, hand_rig) == pytest.approx(-8.0)
    # mean over sequences
    assert M.fdd([still, moving], [moving, moving], hand_rig) == pytest.approx(4.0)


def test_compute_vertex_metrics_is_consistent(hand_rig):
    pred = frames(jawOpen=[1.0, 0.5, 0.0], browInnerUp=[0.5, 0.0, 0.0])
    target = np.zeros_like(pred)
    result = M.compute_vertex_metrics(pred, target, hand_rig)
    assert result["lve_mm"] == pytest.approx(M.lve(pred, target, hand_rig))
    assert result["lve_squared_mm2"] == pytest.approx(M.lve(pred, target, hand_rig, squared=True))
    assert result["eve_mm"] == pytest.approx(M.eve(pred, target, hand_rig))
    assert result["num_frames"] == 3 and result["num_sequences"] == 1


# ---------------------------------------------------------------------------------------------------------------------
# conventions, pooling, masks


def test_squared_convention_matches_torchmetrics(rig):
    from torchmetrics.functional.multimodal import lip_vertex_error
    from torchmetrics.multimodal import LipVertexError

    generator = np.random.default_rng(0)
    pred = generator.uniform(0, 1, size=(12, 52))
    target = generator.uniform(0, 1, size=(12, 52))
    lips = rig.region("lips").tolist()
    vertices_pred = torch.from_numpy(rig.vertices(pred))  # float64 [T, V, 3]
    vertices_gt = torch.from_numpy(rig.vertices(target))
    expected = lip_vertex_error(vertices_pred, vertices_gt, lips).item()
    assert M.lve(pred, target, rig, squared=True) == pytest.approx(expected, rel=1e-6)
    metric = LipVertexError(mouth_map=lips)
    metric.update(vertices_pred, vertices_gt)
    assert M.lve_squared(pred, target, rig) == pytest.approx(metric.compute().item(), rel=1e-6)
    # the root version is not the root of the squared mean (it averages per-frame roots)
    assert M.lve(pred, target, rig) < np.sqrt(expected)


def test_eve_squared_matches_torchmetrics_on_the_eye_region(rig):
    from torchmetrics.functional.multimodal import lip_vertex_error

    generator = np.random.default_rng(1)
    pred, target = generator.uniform(0, 1, size=(2, 8, 52))
    expected = lip_vertex_error(
        torch.from_numpy(rig.vertices(pred)),
        torch.from_numpy(rig.vertices(target)),
        rig.region("eye_forehead").tolist(),
    ).item()
    assert M.eve(pred, target, rig, squared=True) == pytest.approx(expected, rel=1e-6)


def test_frames_are_pooled_across_sequences(hand_rig):
    long = frames(jawOpen=[1.0, 1.0, 1.0])  # 10 mm each frame
    short = frames(jawOpen=[0.0])  # 0 mm
    value = M.lve([long, short], [np.zeros_like(long), np.zeros_like(short)], hand_rig)
    assert value == pytest.approx(30 / 4)  # pooled frames, not (10 + 0) / 2
    np.testing.assert_allclose(
        M.lve([long, short], [np.zeros_like(long), np.zeros_like(short)], hand_rig, reduction="sequences"), [10, 0]
    )


def test_mask_ignores_padding(hand_rig):
    pred = np.zeros((2, 4, 52))
    target = np.zeros((2, 4, 52))
    pred[0, :2, JAW] = 1.0  # sequence 0: 2 real frames with 10 mm error
    pred[0, 2:, JAW] = 0.9  # padding: garbage (finite) that the mask must drop
    pred[1, :, JAW] = 0.5  # sequence 1: 4 real frames with 5 mm error
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=bool)
    masked = M.lve(pred, target, hand_rig, mask=mask)
    assert masked == pytest.approx((2 * 10 + 4 * 5) / 6)
    assert masked == pytest.approx(M.lve([pred[0, :2], pred[1]], [target[0, :2], target[1]], hand_rig))
    assert M.lve(
        torch.from_numpy(pred), torch.from_numpy(target), hand_rig, mask=torch.from_numpy(mask)
    ) == pytest.approx(masked)


def test_length_mismatch_is_an_error(hand_rig):
    with pytest.raises(ValueError, match="same number of frames, got 5 and 4"):
        M.lve(np.zeros((5, 52)), np.zeros((4, 52)), hand_rig)
    with pytest.raises(ValueError, match="same number of sequences"):
        M.eve([np.zeros((5, 52))], [np.zeros((5, 52))] * 2, hand_rig)


@pytest.mark.parametrize("metric", [M.lve, M.eve, M.mve, M.fdd])
def test_nan_predictions_are_an_error(hand_rig, metric):
    pred = np.zeros((3, 52))
    pred[1, 4] = np.nan
    with pytest.raises(ValueError, match="pred must be finite"):
        metric(pred, np.zeros((3, 52)), hand_rig)


def test_nan_is_an_error_for_the_other_metrics():
    bad = np.zeros((2, 3, 52))
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="finite"):
        M.blendshape_mae(bad, np.zeros((2, 3, 52)))
    with pytest.raises(ValueError, match="finite"):
        M.diversity(bad)
    with pytest.raises(ValueError, match="finite"):
        M.mouth_audio_correlation(bad[0], np.zeros(16000), fps=30)


def test_wrong_shapes_are_errors(hand_rig):
    with pytest.raises(ValueError, match=r"\[frames, 52\]"):
        M.lve(np.zeros((3, 51)), np.zeros((3, 51)), hand_rig)
    with pytest.raises(ValueError, match="mask"):
        M.lve(np.zeros((2, 3, 52)), np.zeros((2, 3, 52)), hand_rig, mask=np.ones((2, 4)))
    with pytest.raises(ValueError, match="at least one frame"):
        M.lve(np.zeros((3, 52)), np.zeros((3, 52)), hand_rig, mask=np.zeros(3))


# ---------------------------------------------------------------------------------------------------------------------
# metrics without ground truth


def _speech_like(seconds: float = 4.0, fps: float = 30.0, seed: int = 0):
    """Audio whose loudness follows a syllable envelope, and the envelope per animation frame."""
    rng = np.random.default_rng(seed)
    frames_count = int(seconds * fps)
    envelope = np.clip(np.sin(np.arange(frames_count) / fps * 2 * np.pi * 2.5), 0, None) + 0.02
    samples_per_frame = int(16000 / fps)
    audio = np.repeat(envelope, samples_per_frame) * rng.normal(0, 0.3, frames_count * samples_per_frame)
    return audio.astype(np.float32), envelope


def test_mouth_audio_correlation_follows_energy():
    audio, envelope = _speech_like()
    in_sync = frames(jawOpen=envelope / envelope.max())
    assert M.mouth_audio_correlation(in_sync, audio, fps=30) > 0.7
    inverted = frames(jawOpen=1 - envelope / envelope.max())
    assert M.mouth_audio_correlation(inverted, audio, fps=30) < -0.7
    # mouthClose over an open jaw closes the lips: no opening, no correlation left
    closed = frames(jawOpen=envelope / envelope.max(), mouthClose=envelope / envelope.max())
    assert np.isnan(M.mouth_audio_correlation(closed, audio, fps=30))


def test_mouth_audio_correlation_with_the_rig_lip_gap(rig):
    audio, envelope = _speech_like(seed=1)
    animation = frames(jawOpen=0.6 * envelope / envelope.max())
    assert M.mouth_audio_correlation([animation, animation], [audio, audio], fps=30, rig=rig) > 0.7
    opening = M.mouth_opening(frames(jawOpen=[0.0, 1.0]), rig)
    assert opening[1] - opening[0] > 5  # mm between the inner-lip landmarks


def test_diversity(hand_rig):
    base = np.random.default_rng(0).uniform(0, 1, size=(6, 52))
    same = np.stack([base, base, base])
    assert M.diversity(same) == 0.0
    shifted = base.copy()
    shifted[:, SMILE] += 0.1
    assert M.diversity(np.stack([base, shifted])) == pytest.approx(0.1)
    jaw = base.copy()
    jaw[:, JAW] += 1.0  # lip vertices 0 / 1 move 10 / 5 mm: mean over the 4 vertices 3.75 mm
    assert M.diversity(np.stack([base, jaw]), rig=hand_rig) == pytest.approx(3.75, rel=1e-5)
    assert M.diversity([np.stack([base, shifted]), same]) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="samples >= 2"):
        M.diversity(base[None])


# ---------------------------------------------------------------------------------------------------------------------
# expression classifier and emotion accuracy


# one upper-face action per emotion (like action units), on top of noise everywhere
EMOTION_ACTIONS = [BLENDSHAPE_INDEX[n] for n in ("eyeBlinkLeft", "browDownLeft", "browOuterUpRight", "noseSneerLeft",
                   "eyeWideLeft", "cheekSquintLeft", "browInnerUp", "eyeWideRight")]  # fmt: skip


def synthetic_clips(count_per_emotion: int, seed: int) -> list[dict]:
    """Clips whose upper face (brows / eyes / cheeks) depends on the emotion; the mouth is random speech."""
    rng = np.random.default_rng(seed)
    rows = []
    for emotion_id, emotion in enumerate(EMOTIONS):
        for _ in range(count_per_emotion):
            length = int(rng.integers(20, 40))
            clip = np.clip(rng.normal(0.1, 0.05, size=(length, 52)), 0, 1)
            clip[:, JAW] = rng.uniform(0, 1, length)
            clip[:, EMOTION_ACTIONS[emotion_id]] = np.clip(rng.normal(0.5, 0.1, length), 0, 1)
            rows.append({"blendshapes": clip.astype(np.float32), "emotion": emotion})
    return rows


def test_expression_classifier_learns_fits_and_round_trips(tmp_path):
    train, test = synthetic_clips(12, seed=0), synthetic_clips(4, seed=1)
    classifier = ExpressionClassifier(seed=0).fit(train, epochs=150)
    assert classifier.score(test) > 0.9
    clips = [r["blendshapes"] for r in test]
    labels = [r["emotion"] for r in test]
    assert M.emotion_accuracy(classifier, clips, labels) == pytest.approx(classifier.score(test))
    assert M.emotion_accuracy(classifier, clips, [EMOTIONS.index(e) for e in labels]) == pytest.approx(
        classifier.score(test)
    )
    loaded = ExpressionClassifier.load(classifier.save(tmp_path / "classifier"))
    np.testing.assert_allclose(loaded.predict_proba(clips), classifier.predict_proba(clips), rtol=1e-5, atol=1e-6)
    # clips + labels form (as the training pipeline calls it) gives the same model
    other = ExpressionClassifier(seed=0).fit(
        [r["blendshapes"] for r in train], [r["emotion"] for r in train], epochs=150
    )
    assert other.predict(clips) == classifier.predict(clips)


def test_expression_classifier_ignores_the_mouth():
    rows = synthetic_clips(3, seed=2)
    classifier = ExpressionClassifier(seed=0).fit(rows, epochs=20)
    clip = rows[0]["blendshapes"].copy()
    before = classifier.predict_proba([clip])
    clip[:, JAW] = 1.0 - clip[:, JAW]
    clip[:, SMILE] = 1.0
    np.testing.assert_allclose(classifier.predict_proba([clip]), before)


def test_expression_classifier_errors(tmp_path):
    with pytest.raises(RuntimeError, match="fit"):
        ExpressionClassifier().predict([np.zeros((5, 52))])
    with pytest.raises(ValueError, match="emotion must be one of"):
        ExpressionClassifier().fit([{"blendshapes": np.zeros((5, 52)), "emotion": "bored"}] * 2)
    with pytest.raises(ValueError, match="regions"):
        ExpressionClassifier(regions=("ears",))
    with pytest.raises(FileNotFoundError):
        ExpressionClassifier.load(tmp_path)
    classifier = ExpressionClassifier().fit(synthetic_clips(1, seed=0), epochs=1)
    bad = np.zeros((5, 52))
    bad[2, BROW] = np.nan
    with pytest.raises(ValueError, match="finite"):
        M.emotion_accuracy(classifier, [bad], ["happy"])
    with pytest.raises(ValueError, match="emotions must be names"):
        M.emotion_accuracy(classifier, [np.zeros((5, 52))], ["bored"])


def test_expression_classifier_on_a_datasets_split():
    rows = synthetic_clips(4, seed=3)
    split = datasets.Dataset.from_list(
        [{"blendshapes": r["blendshapes"].tolist(), "emotion": r["emotion"]} for r in rows]
    )
    classifier = ExpressionClassifier(seed=0).fit(split, epochs=100)
    assert classifier.score(split) > 0.9


# ---------------------------------------------------------------------------------------------------------------------
# evaluate-loadable modules


@pytest.mark.parametrize("name", ["lve", "eve"])
def test_evaluate_load_offline(monkeypatch, rig, rig_path, name):
    from esarm.evaluation import metric_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True, raising=False)
    metric = evaluate.load(metric_path(name))
    rng = np.random.default_rng(0)
    pred = [rng.uniform(0, 1, (6, 52)), rng.uniform(0, 1, (4, 52))]
    target = [rng.uniform(0, 1, (6, 52)), rng.uniform(0, 1, (4, 52))]
    result = metric.compute(
        predictions=[p.tolist() for p in pred], references=[t.tolist() for t in target], rig=str(rig_path)
    )
    function = M.lve if name == "lve" else M.eve
    assert result[f"{name}_mm"] == pytest.approx(function(pred, target, rig), rel=1e-5)
    assert result[f"{name}_squared_mm2"] == pytest.approx(function(pred, target, rig, squared=True), rel=1e-5)


def test_metric_path_rejects_unknown_names():
    from esarm.evaluation import metric_path

    with pytest.raises(ValueError, match="lve"):
        metric_path("bleu")
