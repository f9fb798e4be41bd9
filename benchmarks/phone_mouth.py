"""Should a mouth from recognised phones be a mode of its own? The STA, the phone rules, and the two combined.

    python benchmarks/phone_mouth.py --heldout runs/heldout_validation_7

On the real-speech set (esarm.data.real_speech) and the first ``--sentences`` sentences of the held-out eSpeak NG
validation voices (esarm.data.heldout, built in ``--heldout`` if missing), labelled neutral, greedy:

- ``STA``: the model (default: esarm's default model), all 52 blendshapes;
- ``phone rules (jaw)``: the phone-rules animator (esarm.evaluation.lipsync_baselines.phone_rules_jaw: the graded
  openness of the phones PocketSphinx recognises), a jaw curve only;
- ``STA + phone visemes`` (``esarm animate --mouth phones``, esarm.phone_mouth.with_phone_mouth): the STA's face
  with its mouth region (jaw, mouth, tongue, cheekPuff: esarm.blendshapes.FACE_REGIONS) replaced by the corpus's
  viseme and coarticulation model (esarm.data.synthetic.expressions.animate, the ground-truth generator, neutral,
  one fixed speaker style) run on the recognised phones; its upper face (eyes, brows) is the STA's, so its mouth
  measures are those of the phone visemes alone;
- ``STA / visemes mean`` (``--mouth mix``): the mouth region the mean of the two.

Columns (esarm.evaluation.lipsync.set_scores): r of jawOpen and of the lip aperture (mm, the embedded rig) with the
graded openness of the clip's phone labels, p / b / m closure and rest in silence of the jaw.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from esarm.data.real_speech import load_real_speech_set
from esarm.default_model import load_default_model
from esarm.evaluation.lipsync import animate_rows, jaw_open, lip_aperture, row_num_frames, set_scores
from esarm.evaluation.lipsync_baselines import phone_rules_jaw
from esarm.evaluation.lipsync_evaluation import load_model
from esarm.phone_mouth import with_phone_mouth
from esarm.rig import FaceRig

COLUMNS = ("r_jaw", "r_aperture", "closure_jaw", "rest_jaw")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="STA model folder (default: esarm's default model)")
    parser.add_argument("--heldout", help="held-out sets folder (built there if missing); none: real speech only")
    parser.add_argument("--sentences", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.model)[0] if args.model else load_default_model()[0]
    rig = FaceRig.default()
    sets = {"real speech": load_real_speech_set()}
    if args.heldout:
        import phonetic_beam

        sets["eSpeak NG validation"] = phonetic_beam.heldout_rows(args.heldout, args.sentences)
    print("| set | source | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---:|" * len(COLUMNS))
    for name, rows in sets.items():
        sta = animate_rows(model, rows)
        sources = {"STA": sta}
        for label, mouth in (("STA + phone visemes", "phones"), ("STA / visemes mean", "mix")):
            sources[label] = [
                with_phone_mouth(face, row["audio"], row["sampling_rate"], row["fps"], mouth)
                for face, row in zip(sta, rows)
            ]
        rules = [phone_rules_jaw(r["audio"], r["sampling_rate"], row_num_frames(r), r["fps"]) for r in rows]
        results = {"phone rules (jaw)": set_scores(rows, [{"jaw": jaw} for jaw in rules])}
        for source, faces in sources.items():
            mouths = [{"jaw": jaw_open(f), "aperture": lip_aperture(f, rig)} for f in faces]
            results[source] = set_scores(rows, mouths)
        for source, scores in results.items():
            cells = " | ".join("–" if np.isnan(scores[c]) else f"{scores[c]:.3f}" for c in COLUMNS)
            print(f"| {name} ({len(rows)}) | {source} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
