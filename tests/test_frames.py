"""Frame counts and the one resampler (esarm.frames)."""

from __future__ import annotations

import math

import torch

from esarm.frames import num_frames, num_motion_steps, resample


def test_num_frames_rounds_halves_up_on_ints_and_tensors():
    assert num_frames(16000, 30.0, 16000) == 30
    assert num_frames(2400, 30.0, 16000) == 5  # 4.5 frames: half up (Python's round() gives 4)
    assert num_frames(800, 30.0, 16000) == 2  # 1.5 frames
    assert num_frames(10, 30.0, 16000) == 1  # at least one frame
    lengths = torch.tensor([16000, 2400, 800, 10, 9600])
    assert num_frames(lengths, 30.0, 16000).tolist() == [30, 5, 2, 1, 18]
    for n in range(1, 20000, 37):
        assert num_frames(torch.tensor([n]), 25.0, 16000).item() == num_frames(n, 25.0, 16000)
        assert num_frames(n, 25.0, 16000) == max(1, math.floor(n * 25.0 / 16000 + 0.5))


def test_num_motion_steps_is_the_ceiling_of_frames_per_token():
    assert num_motion_steps(16000, 30.0, 16000, 2) == 15
    assert num_motion_steps(int(1.05 * 16000), 30.0, 16000, 2) == math.ceil(32 / 2)  # 31.5 frames -> 32
    assert num_motion_steps(torch.tensor([16000, 2400]), 30.0, 16000, 4).tolist() == [8, 2]


def test_resample_keeps_constant_sequences_and_masks():
    features = torch.ones(2, 10, 3) * torch.tensor([1.0, 2.0, 3.0])
    out, mask = resample(features, torch.tensor([10, 4]), torch.tensor([7, 3]))
    assert out.shape == (2, 7, 3) and mask.tolist()[1] == [True] * 3 + [False] * 4
    torch.testing.assert_close(out[0], torch.ones(7, 3) * torch.tensor([1.0, 2.0, 3.0]))
    assert torch.all(out[1, 3:] == 0)


def test_resample_averages_every_frame_when_shortening():
    # an impulse between two sampled positions still shows (linear interpolation would drop it)
    features = torch.zeros(1, 12, 1)
    features[0, 4] = 3.0
    out, _ = resample(features, torch.tensor([12]), torch.tensor([4]))
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(out.sum(), features.sum() / 3)
    ramp = torch.arange(4.0).view(1, 4, 1)  # lengthening stays linear, between frame centres
    longer, _ = resample(ramp, torch.tensor([4]), torch.tensor([8]))
    torch.testing.assert_close(longer[0, :, 0], torch.tensor([0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]))
