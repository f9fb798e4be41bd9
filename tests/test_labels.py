"""The one label rule (esarm.labels) and the speakers of a model."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from esarm import ESARMProcessor
from esarm.blendshapes import EMOTIONS
from esarm.labels import (
    UNKNOWN_SPEAKER_ID,
    dataset_speakers,
    emotion_to_id,
    intensity_to_id,
    model_speakers,
    speaker_to_id,
)


def test_emotion_names_in_any_case_ids_and_digit_strings():
    assert [emotion_to_id(name) for name in EMOTIONS] == list(range(len(EMOTIONS)))
    assert emotion_to_id("Happy") == emotion_to_id(" HAPPY ") == EMOTIONS.index("happy")
    assert emotion_to_id(3) == emotion_to_id(np.int64(3)) == emotion_to_id(np.array(3)) == emotion_to_id("3") == 3


@pytest.mark.parametrize("emotion", ["joyful", 8, -1, "8", True, None, 2.0])
def test_bad_emotions_name_the_argument_and_the_value(emotion):
    with pytest.raises(
        ValueError, match=rf"emotion must be one of \['neutral', .*\] or an id in \[0, 8\), got {emotion!r}"
    ):
        emotion_to_id(emotion)


def test_intensity_levels_and_digit_strings():
    assert [intensity_to_id(level) for level in (1, 2, 3)] == [0, 1, 2]
    assert intensity_to_id("3") == intensity_to_id(np.int32(3)) == 2
    for bad in (0, 4, "high", True, None):
        with pytest.raises(ValueError, match=rf"intensity must be a level in \[1, 2, 3\], got {bad!r}"):
            intensity_to_id(bad)


def test_speakers_known_unknown_and_ids():
    speakers = ["M003", "W009"]
    assert speaker_to_id("W009", speakers) == 2
    assert speaker_to_id("m003", speakers) == 1  # any case
    assert speaker_to_id(None, speakers) == UNKNOWN_SPEAKER_ID == 0
    assert speaker_to_id("W999", speakers) == UNKNOWN_SPEAKER_ID  # held-out speakers are unknown by design
    assert speaker_to_id("W999", []) == UNKNOWN_SPEAKER_ID
    assert speaker_to_id(2, speakers) == speaker_to_id("2", speakers) == 2
    assert speaker_to_id("7", ["7"]) == 1  # a name that is a digit string is still a name
    for bad in (3, "3", -1, True):
        with pytest.raises(ValueError, match=r"speaker must be one of the known speakers \['M003', 'W009'\]"):
            speaker_to_id(bad, speakers)


def test_dataset_and_model_speakers(tmp_path):
    split = Dataset.from_dict({"speaker": ["bob", "ann", "bob", "carl"]})
    assert dataset_speakers(split) == ["ann", "bob", "carl"]
    ESARMProcessor(speakers=["ann", "bob"]).save_pretrained(tmp_path / "model")
    assert model_speakers(tmp_path / "model") == ["ann", "bob"]
    assert model_speakers(str(tmp_path / "model")) == ["ann", "bob"]
    (tmp_path / "bare").mkdir()
    assert model_speakers(tmp_path / "bare") == []  # saved without a processor: everyone is the unknown speaker
    assert model_speakers(None) == []
