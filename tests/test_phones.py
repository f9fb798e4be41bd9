import numpy as np
import pytest

from esarm.data.phones import (
    arpabet_to_ipa,
    frame_classes,
    openness,
    openness_curve,
    phone_class,
)


@pytest.mark.parametrize(
    "phoneme, expected",
    [("ˈɑː", "open"), ("aɪ", "open"), ("ə", "mid"), ("oʊ", "mid"), ("iː", "close"), ("ʊ", "close"),
     ("p", "bilabial"), ("m", "bilabial"), ("s", "other"), ("tʃ", "other"), ("_", "pause"), ("", "pause")],
)  # fmt: skip
def test_phone_class(phoneme, expected):
    assert phone_class(phoneme) == expected


def test_arpabet_maps_onto_the_same_classes():
    assert phone_class(arpabet_to_ipa("AA1")) == "open"
    assert phone_class(arpabet_to_ipa("ax")) == "mid"
    assert phone_class(arpabet_to_ipa("iy")) == "close"
    assert phone_class(arpabet_to_ipa("b")) == "bilabial"
    assert phone_class(arpabet_to_ipa("pau")) == "pause"
    with pytest.raises(ValueError, match="ARPAbet"):
        arpabet_to_ipa("qq")


def test_frame_classes_follow_the_timings():
    # "_" 0-0.1 s, "p" 0.1-0.2 s, "a" 0.2-0.4 s at 10 fps; frame centres 0.05, 0.15, 0.25, 0.35
    classes = frame_classes(["_", "p", "a"], [0.0, 0.1, 0.2], duration=0.4, fps=10)
    assert classes == ["pause", "bilabial", "open", "open"]
    # frames before the first phoneme are pauses
    assert frame_classes(["a"], [0.2], duration=0.4, fps=10) == ["pause", "pause", "open", "open"]


def test_openness_curve_values_and_smoothing():
    raw = openness_curve(["_", "p", "a"], [0.0, 0.1, 0.2], duration=0.4, fps=10, smoothing_frames=1)
    np.testing.assert_allclose(raw, [0.0, 0.0, 1.0, 1.0])
    smooth = openness_curve(["_", "p", "a"], [0.0, 0.1, 0.2], duration=0.4, fps=10, smoothing_frames=3)
    np.testing.assert_allclose(smooth, [0.0, 1 / 3, 2 / 3, 1.0], rtol=1e-6)
    assert openness("ɛ") == 0.7
