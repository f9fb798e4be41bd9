"""The phones a live phonetic model hears: each window decoding all its audio, or only its last seconds.

    python benchmarks/streaming_phones.py --phone_decode none 0.6 1.0

``StreamingAnimator.low_latency`` (one motion token per window, ``--context`` seconds before it, ``--lookahead``
after) runs a phonetic model on every window; its phone path hears the phones PocketSphinx recognises in the
window's audio. On the real-speech set (esarm.data.real_speech) this walks the windows of each clip as that animator
does and keeps, for each window, the phones of the frames it animates (the window's last motion token): the live
phone track. Per ``--phone_decode`` (``none``: the window's whole audio is decoded, as without
``phone_decode_seconds``; a number: ``phone_decode_seconds``, the last seconds decoded and the earlier frames' phones
taken from the windows before) it reports the graded openness of that track against the clip's phone labels (r,
closure, rest: esarm.evaluation.lipsync.set_scores), the agreement of its phones with one decode of the whole clip,
and the process CPU time of phone decoding per window (1 thread). The first row decodes each whole clip once (the
offline phone-rules animator).

The model is a random-init STA of configs/small_phonetic.yaml: only its geometry (fps, motion token) and its having
a phone path matter here, never its weights.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from esarm import ESARMSTAConfig, ESARMSTAForGeneration
from esarm.data.phones import openness_curve
from esarm.data.real_speech import load_real_speech_set
from esarm.data.sphinx import to_ipa
from esarm.evaluation.lipsync import set_scores
from esarm.frames import num_frames
from esarm.inference import cpu_name
from esarm.phonetic import DECODER_SETTINGS, PHONES, phone_features
from esarm.streaming import StreamingAnimator

PHONETIC_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "small_phonetic.yaml"


def live_phone_track(model, audio: np.ndarray, phone_decode: float | None, context: float, lookahead: float):
    """(phone id per 10 ms frame of the clip as the live windows hear it, CPU seconds of decoding per window)."""
    animator = StreamingAnimator.low_latency(
        model, lookahead_seconds=lookahead, context_seconds=context, phone_decode_seconds=phone_decode,
        cpu_defaults=False,
    )  # fmt: skip
    track = np.zeros(len(audio) // 160 + 1, np.int64)
    seconds = []
    window = 0
    while True:
        start = window * animator.hop_frames
        end = start + animator.chunk_frames
        last = animator.frame_to_sample(end + animator.lookahead_frames)
        if last > len(audio):
            break
        first = animator.frame_to_sample(max(0, start - animator.context_frames))
        clip = audio[first:last]
        clip = (clip - clip.mean()) / np.sqrt(clip.var() + 1e-7)
        started = time.process_time()
        if phone_decode is None:
            features = phone_features(clip)
        else:
            features = animator.window_phone_features(clip, first)
        seconds.append(time.process_time() - started)
        # the frames this window animates: [start, end) at the model's fps, in 10 ms frames of the clip
        lo, hi = animator.frame_to_sample(start) // 160, animator.frame_to_sample(end) // 160
        track[lo:hi] = features[lo - first // 160 : hi - first // 160].argmax(axis=1)
        window += 1
    return track, seconds


def openness(track: np.ndarray, row) -> np.ndarray:
    """The phone-rules jaw of a per-frame phone track (frame ``i`` starts at ``(i - 1) / 100`` s, as the decoder's
    frame ``i - 1``; :func:`esarm.phonetic.segments_to_features`)."""
    changes = np.flatnonzero(np.diff(track)) + 1
    starts = np.concatenate([[0], changes])
    phones = [PHONES[int(track[s])] for s in starts]
    times = [max(0.0, (s - 1) / 100.0) for s in starts]
    duration = len(row["audio"]) / row["sampling_rate"]
    return openness_curve(to_ipa(phones), times, duration, row["fps"], num_frames(len(row["audio"]), row["fps"], 16000))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phone_decode", nargs="+", default=["none", "0.6", "1.0"])
    parser.add_argument("--context", type=float, default=2.0)
    parser.add_argument("--lookahead", type=float, default=0.1)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    overrides = yaml.safe_load(PHONETIC_CONFIG.read_text())["sta"]["model_overrides"]
    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny(**overrides)).eval()
    rows = load_real_speech_set()
    offline = []
    for row in rows:
        features = phone_features(row["audio"])
        offline.append(features.argmax(axis=1))
    print(f"CPU: {cpu_name()}, 1 thread; decoder {DECODER_SETTINGS}; real-speech set ({len(rows)} clips); "
          f"context {args.context:g} s, look-ahead {args.lookahead:g} s")  # fmt: skip
    print("| phones | r | closure | rest | agreement with the whole-clip decode | decode CPU per window p50 / p95 (ms) |")
    print("|---|---:|---:|---:|---:|---:|")
    scores = set_scores(rows, [{"jaw": openness(track, row)} for track, row in zip(offline, rows)])
    print(f"| whole clip, once (offline) | {scores['r_jaw']:.3f} | {scores['closure_jaw']:.3f} | "
          f"{scores['rest_jaw']:.3f} | 1 | – |")  # fmt: skip
    for option in args.phone_decode:
        phone_decode = None if option == "none" else float(option)
        tracks, seconds = [], []
        for row in rows:
            track, spent = live_phone_track(model, row["audio"], phone_decode, args.context, args.lookahead)
            tracks.append(track)
            seconds.extend(spent)
        scores = set_scores(rows, [{"jaw": openness(track, row)} for track, row in zip(tracks, rows)])
        # frames the live windows animate (the clip's tail after the last whole window is the flush's)
        agreement = np.mean(np.concatenate([(t == o)[: len(t)] for t, o in zip(tracks, offline)]))
        name = "each window: its whole audio" if phone_decode is None else f"each window: its last {phone_decode:g} s"
        ms = 1000 * np.asarray(seconds)
        print(f"| {name} | {scores['r_jaw']:.3f} | {scores['closure_jaw']:.3f} | {scores['rest_jaw']:.3f} | "
              f"{agreement:.3f} | {np.median(ms):.0f} / {np.percentile(ms, 95):.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
