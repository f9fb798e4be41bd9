"""The one input check of the STA model and the reward model (esarm.model_inputs): both models give the same
answer to the same bad input, bool ids and bool code ids included."""

from __future__ import annotations

import pytest
import torch

from esarm import ESARMRewardModel, ESARMRewardModelConfig, ESARMSTAConfig, ESARMSTAForGeneration
from esarm.model_inputs import check_model_inputs

SAMPLES = 8000  # 0.5 s at 16 kHz: 15 frames, 8 motion steps of 2 frames


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {
        "sta": ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval(),
        "reward": ESARMRewardModel(ESARMRewardModelConfig.tiny()).eval(),
    }


def inputs(config, **change) -> dict:
    steps = 8
    return {
        "input_values": torch.randn(2, SAMPLES) * 0.1,
        "emotion_ids": torch.tensor([0, 3]),
        "intensity_ids": torch.tensor([0, 2]),
        "speaker_ids": torch.tensor([0, 0]),
        "motion_tokens": torch.zeros(2, steps, config.num_groups, dtype=torch.long),
        "motion_mask": torch.ones(2, steps, dtype=torch.bool),
        **change,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(emotion_ids=torch.tensor([True, False])), "emotion_ids must be integer ids, got dtype torch.bool"),
        (dict(intensity_ids=torch.tensor([True, True])), "intensity_ids must be integer ids, got dtype torch.bool"),
        (dict(speaker_ids=True), "speaker_ids must be integer ids in .*, got bool"),
        (dict(motion_tokens=torch.zeros(2, 8, 3, dtype=torch.bool)), "motion_tokens must be integer code ids, got dtype torch.bool"),
        (dict(emotion_ids=torch.tensor([0.0, 1.0])), "emotion_ids must be integer ids, got dtype torch.float32"),
        (dict(input_values=torch.zeros(2, 100)), r"at least one animation frame .*534 samples"),
        (dict(motion_mask=torch.ones(2, 5)), r"motion_mask must have shape \[batch, steps\] = \[2, 8\], got \[2, 5\]"),
        (dict(motion_tokens=torch.zeros(1, 8, 3, dtype=torch.long)), "motion_tokens must have batch size 2"),
    ],
)  # fmt: skip
def test_both_models_reject_the_same_input_with_the_same_message(models, change, message):
    for model in models.values():
        with pytest.raises(ValueError, match=message):
            model(**inputs(model.config, **change))


def test_required_inputs_and_argument_conflicts(models):
    reward = models["reward"]
    parameter = next(reward.parameters())
    for name in ("emotion_ids", "intensity_ids", "motion_tokens"):
        with pytest.raises(ValueError, match=f"{name} must be given, got None"):
            reward(**inputs(reward.config, **{name: None}))
    sta = models["sta"]
    with pytest.raises(ValueError, match="motion_mask must come with motion_tokens"):
        sta(**inputs(sta.config, motion_tokens=None))
    # the checked inputs: ids as int64 (a 0-d id broadcast over the batch), padded steps as code 0, unknown speaker
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    tokens = torch.full((2, 8, 3), 7, dtype=torch.int32)
    checked = check_model_inputs(
        reward.config, parameter, torch.randn(2, SAMPLES), None, torch.tensor(1, dtype=torch.int16), [0, 1], None,
        tokens, mask,
    )  # fmt: skip
    assert checked.emotion_ids.tolist() == [1, 1] and checked.emotion_ids.dtype == torch.long
    assert checked.speaker_ids.tolist() == [0, 0] and checked.lengths.tolist() == [SAMPLES, SAMPLES]
    assert checked.motion_tokens.dtype == torch.long and checked.motion_tokens[1, 5:].eq(0).all()
    assert checked.motion_tokens[0].eq(7).all() and checked.input_values.dtype == parameter.dtype


def test_value_checks_run_only_when_asked(models):
    """forward reads no tensor values (a device sync); the entry points for user input ask for the value checks."""
    sta = models["sta"]
    parameter = next(sta.parameters())
    audio = torch.randn(2, SAMPLES)
    out_of_range = torch.tensor([0, 8])
    checked = check_model_inputs(sta.config, parameter, audio, emotion_ids=out_of_range)
    assert checked.emotion_ids.tolist() == [0, 8]
    with pytest.raises(ValueError, match=r"emotion_ids must be ids in \[0, 8\), got values in \[0, 8\]"):
        check_model_inputs(sta.config, parameter, audio, emotion_ids=out_of_range, check_values=True)
    audio[0, 3] = float("nan")
    with pytest.raises(ValueError, match="input_values must be finite, got 1 NaN/inf samples"):
        check_model_inputs(sta.config, parameter, audio, check_values=True)
