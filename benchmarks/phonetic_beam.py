"""PocketSphinx allphone beams: decoding speed against the phone-rules animator's lip sync, side by side, 1 thread.

    python benchmarks/phonetic_beam.py --heldout runs/heldout_validation_7
    python benchmarks/phonetic_beam.py --beams 1e-20 1e-10 --lw 2.0 4.0 --heldout runs/heldout_validation_7

For every decoder setting (``beam = pbeam`` in ``--beams``, language-model weight in ``--lw``) it decodes the
real-speech set (esarm.data.real_speech, 14 recordings of real people, 47.6 s; also alone its clip with published
phone labels, and with white noise at each ``--snr``) and the first ``--sentences``
sentences of the held-out validation set's six eSpeak NG voices (esarm.data.heldout, built in ``--heldout`` if it is
not there; 7 sentences = 42 clips). The settings take turns clip by clip, so that a load on the shared machine falls
on all of them alike.

Columns per set: ``RTF`` (process CPU seconds of decoding over seconds of audio, the decoder already loaded), and the
phone-rules animator's mouth (the graded openness of the recognised phones, esarm.evaluation.lipsync_baselines
.phone_rules_jaw) scored by esarm.evaluation.lipsync.set_scores: ``r`` (mean over clips of Pearson r with the
openness of the clip's phone labels), ``closure`` (mean jaw on p / b / m over its mean on vowels) and ``rest`` (mean
jaw in silence over its mean in speech).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from esarm.data.heldout import build_heldout_sets
from esarm.data.phones import openness_curve
from esarm.data.real_speech import load_real_speech_set
from esarm.data.sphinx import FRAME_RATE, to_ipa
from esarm.evaluation.lipsync import set_scores
from esarm.evaluation.lipsync_baselines import row_audio
from esarm.frames import num_frames
from esarm.inference import cpu_name
from esarm.phonetic import DECODER_SETTINGS, recognize_phones


def heldout_rows(folder: str, sentences: int) -> list[dict[str, Any]]:
    """The eSpeak NG validation clips, audio decoded to float32 samples."""
    from datasets import load_from_disk

    path = build_heldout_sets(folder, splits=("validation",), num_sentences=sentences)
    return [{**row, "audio": row_audio(row)} for row in load_from_disk(str(path))["validation"]]


def jaw(segments, row: dict[str, Any]) -> np.ndarray:
    """The phone-rules mouth on the row's frames (as esarm.evaluation.lipsync_baselines.phone_rules_jaw)."""
    phones, starts = [s.phone for s in segments], [s.start / FRAME_RATE for s in segments]
    audio = row["audio"]
    frames = num_frames(len(audio), row["fps"], row["sampling_rate"])
    return openness_curve(to_ipa(phones), starts, len(audio) / row["sampling_rate"], row["fps"], frames)


def with_noise(row: dict[str, Any], snr_db: float, seed: int) -> dict[str, Any]:
    """The row with white Gaussian noise added at ``snr_db`` (seeded by ``seed``)."""
    audio = np.asarray(row["audio"], np.float64)
    noise = np.random.default_rng([seed, 11]).normal(0.0, 1.0, len(audio))
    noise *= np.sqrt(np.mean(audio**2) / 10 ** (snr_db / 10))
    return {**row, "audio": (audio + noise).astype(np.float32)}


def measure(rows: list[dict[str, Any]], settings: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per setting: RTF, r, closure and rest over ``rows`` (16 kHz), the settings interleaved clip by clip."""
    for setting in settings:  # load every decoder before timing
        recognize_phones(np.zeros(1600, np.float32) + np.random.default_rng(0).normal(0, 0.1, 1600), setting)
    seconds = [0.0] * len(settings)
    curves = [[] for _ in settings]
    for row in rows:
        if row["sampling_rate"] != 16000:
            raise ValueError(f"clips must be sampled at 16 kHz, got {row['sampling_rate']} ({row.get('id')})")
        for index, setting in enumerate(settings):
            started = time.process_time()
            segments = recognize_phones(row["audio"], setting)
            seconds[index] += time.process_time() - started
            curves[index].append({"jaw": jaw(segments, row)})
    audio_seconds = sum(len(row["audio"]) / row["sampling_rate"] for row in rows)
    results = []
    for index in range(len(settings)):
        scores = set_scores(rows, curves[index])
        results.append({"rtf": seconds[index] / audio_seconds, "r": scores["r_jaw"],
                        "closure": scores["closure_jaw"], "rest": scores["rest_jaw"]})  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beams", type=float, nargs="+", default=[1e-20, 1e-15, 1e-12, 1e-10, 1e-8])
    parser.add_argument("--lw", type=float, nargs="+", default=[DECODER_SETTINGS["lw"]])
    parser.add_argument("--settings", nargs="+", metavar="LW:BEAM",
                        help="these (lw, beam = pbeam) pairs instead of every --lw with every --beams")  # fmt: skip
    parser.add_argument("--heldout", help="held-out sets folder (built there if missing); none: real speech only")
    parser.add_argument("--sentences", type=int, default=7, help="sentences per held-out voice")
    parser.add_argument("--snr", type=float, nargs="*", default=[],
                        help="also the real-speech set with white noise at these SNRs (dB)")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pairs = [tuple(map(float, p.split(":"))) for p in args.settings] if args.settings else [
        (lw, beam) for lw in args.lw for beam in args.beams]  # fmt: skip
    settings = [{"lw": lw, "beam": beam, "pbeam": beam} for lw, beam in pairs]
    real = load_real_speech_set()
    sets = {"real speech": real, "published labels": [row for row in real if row["labels"] == "published"]}
    for snr in args.snr:
        sets[f"real speech, noise {snr:g} dB"] = [with_noise(row, snr, index) for index, row in enumerate(real)]
    if args.heldout:
        sets["eSpeak NG validation"] = heldout_rows(args.heldout, args.sentences)
    results = {name: measure(rows, settings) for name, rows in sets.items()}
    print(f"CPU: {cpu_name()}, 1 thread; current DECODER_SETTINGS {DECODER_SETTINGS}")
    header = " | ".join(f"{name} ({len(rows)}) RTF | r | closure | rest" for name, rows in sets.items())
    print(f"| lw | beam = pbeam | {header} |")
    print("|---:|---:|" + "---:|" * 4 * len(sets))
    for index, setting in enumerate(settings):
        cells = " | ".join(
            f"{s['rtf']:.4f} | {s['r']:.3f} | {s['closure']:.3f} | {s['rest']:.3f}"
            for s in (results[name][index] for name in sets)
        )
        print(f"| {setting['lw']:g} | {setting['beam']:g} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
