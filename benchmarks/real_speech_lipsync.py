"""Lip sync on the real-speech set (esarm.data.real_speech): STA models beside the loudness meter and the phone-rules
animator, and the phone-rules mouth with the STA's upper face as a mode of its own.

    python benchmarks/real_speech_lipsync.py runs/small/sta runs/small_phonetic/sta

Per source, over the set's clips (greedy, labelled neutral): ``r_jaw`` (mean over clips of Pearson r between
jawOpen and the graded phoneme openness of the clip's phone labels), ``closure_jaw`` (mean jawOpen on p / b / m over
its mean on vowels), ``silence_closure`` (mean opening in the quietest fifth of frames over the loudest half: the
mouth at rest in silence) and ``lag_ms``.

- ``loudness``: the RMS envelope (esarm.evaluation.lipsync.loudness_envelope);
- ``phone rules``: the openness of the phones PocketSphinx recognises with no transcript (esarm.phonetic), the
  rules an animator's tool such as Rhubarb Lip Sync applies;
A mode "mouth from recognised phones, upper face from the STA" would score the phone rules' row here. ``--heldout``
also measures every source on the synthetic held-out sets (esarm.data.heldout; ``--splits``), where the phone rules
hear eSpeak NG's and Flite's voices. ``--json`` writes every number.
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np

from esarm.blendshapes import ARKIT_NAMES
from esarm.data.phones import openness_curve
from esarm.data.real_speech import load_real_speech_set
from esarm.data.sphinx import recognise_phones, to_ipa
from esarm.evaluation.lipsync import loudness_envelope, set_scores
from esarm.evaluation.lipsync_evaluation import load_model
from esarm.frames import num_frames
from esarm.streaming import animate_audio

COLUMNS = ("r_jaw", "closure_jaw", "silence_closure", "lag_ms", "jaw_std")
JAW = ARKIT_NAMES.index("jawOpen")


def _frames(row) -> int:
    return num_frames(len(row["audio"]), row["fps"], row["sampling_rate"])


def phone_rules_jaw(row) -> np.ndarray:
    """The phone-rules animator's jawOpen: the graded openness of the recognised phones, on the row's frames."""
    phones, starts = recognise_phones(row["audio"], row["sampling_rate"])
    duration = len(row["audio"]) / row["sampling_rate"]
    frames = num_frames(len(row["audio"]), row["fps"], row["sampling_rate"])
    return openness_curve(to_ipa(phones), starts, duration, row["fps"], frames)


def model_jaw(model, row) -> np.ndarray:
    result = animate_audio(model, row["audio"], sampling_rate=row["sampling_rate"], emotion="neutral", seed=0,
                           cpu_defaults=False)  # fmt: skip
    frames = num_frames(len(row["audio"]), row["fps"], row["sampling_rate"])
    blendshapes = result.blendshapes[:frames]
    if len(blendshapes) < frames:
        blendshapes = np.concatenate([blendshapes, np.repeat(blendshapes[-1:], frames - len(blendshapes), 0)])
    return blendshapes[:, JAW]


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="STA model folders (save_pretrained or Trainer checkpoints)")
    parser.add_argument("--heldout", help="held-out sets folder (esarm.data.heldout) to measure too")
    parser.add_argument("--splits", nargs="+", default=["validation"])
    parser.add_argument("--max_clips", type=int, help="at most this many clips per held-out set")
    parser.add_argument("--json", help="write all scores here")
    args = parser.parse_args(argv)

    sets = {"real speech": load_real_speech_set()}
    if args.heldout:
        from datasets import load_from_disk

        from esarm.data.loading import _without_audio_decoding
        from esarm.evaluation.lipsync import row_audio

        heldout = load_from_disk(args.heldout)
        for split in args.splits:
            data = _without_audio_decoding(heldout[split])
            for engine in sorted({speaker.split(":")[0] for speaker in data["speaker"]}):  # "espeak:..." / "flite:..."
                chosen = [row for row in data if row["speaker"].startswith(engine + ":")][: args.max_clips]
                sets[f"{split} {engine}"] = [{**row, "audio": row_audio(row)} for row in chosen]
    models = {path: load_model(path)[0] for path in args.models}
    results = {}
    print("| set | source | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---:|" * len(COLUMNS))
    for set_name, rows in sets.items():
        sources = {
            "loudness": [loudness_envelope(row["audio"], row["sampling_rate"], _frames(row), row["fps"]) for row in rows],
            "phone rules": [phone_rules_jaw(row) for row in rows],
        }
        for path, model in models.items():
            sources[path] = [model_jaw(model, row) for row in rows]
        results[set_name] = {name: set_scores(rows, [{"jaw": c} for c in curves]) for name, curves in sources.items()}
        for name, scores in results[set_name].items():
            print(f"| {set_name} ({len(rows)}) | {name} | " + " | ".join(f"{scores[c]:.3f}" for c in COLUMNS) + " |",
                  flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
