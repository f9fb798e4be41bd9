"""Lip sync and emotion-invariant mouth timing of STA checkpoints on one fixed held-out set, one line per model.

    python benchmarks/sta_lipsync.py --heldout runs/heldout --split validation --train runs/tiny/corpus \
        runs/tiny/sta/checkpoint-100 runs/tiny/sta/checkpoint-200 runs/tiny/sta

Per model: r(jawOpen, phoneme openness), r(lip aperture), bilabial closure ratio (jawOpen and aperture), lag, and the
mean-removed lip-motion correlation between two emotion labels on the same audio (``--labels``, default neutral and
happy). Beside them, once: the loudness envelope, the linear log-mel probe fitted on ``--train``'s train split, and the
ground-truth generator, whose two-label value is the corpus's own generator run on the same phoneme timings with the
two labels (the value a model that moves the mouth "as the corpus does" reaches). ``--json`` writes everything.
Tune on the validation split; report the test split once.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
from datasets import load_from_disk

from esarm.blendshapes import region_indices
from esarm.data import heldout
from esarm.data.expressions import animate
from esarm.evaluation.lipsync import JAW_OPEN, LogMelProbe, animate_rows, lipsync_table, row_audio
from esarm.evaluation.run import _motion_correlation
from esarm.modeling_sta import ESARMSTAForGeneration
from esarm.processing_esarm import ESARMProcessor
from esarm.rig import resolve_rig

logger = logging.getLogger("sta_lipsync")

LIPS = region_indices("mouth")


def generator_two_label(rows: list[dict], split: str, seed: int, labels: tuple[str, str]) -> float:
    """The ground-truth generator's mouth-motion correlation between the two labels on the same timings and audio."""
    voices, _ = heldout.SPLITS[split]
    styles = {s.name: s for s in heldout._speaker_styles(voices, seed, list(heldout.SPLITS).index(split))}
    first, second = [], []
    for i, row in enumerate(rows):
        audio, fps = row_audio(row), float(row["fps"])
        style = styles[row["speaker"]]
        for label, out in zip(labels, (first, second)):
            intensity = 1 if label == "neutral" else 3
            rng = np.random.default_rng([seed, 11, i])  # the same draws for both labels
            out.append(animate(list(row["phonemes"]), np.asarray(row["phoneme_times"], np.float64), audio,
                               int(row["sampling_rate"]), style, label, intensity, fps, rng))  # fmt: skip
    return _motion_correlation(first, second, LIPS)


def model_scores(path: str, rows: list[dict], rig, labels: tuple[str, str], seed: int) -> dict[str, float]:
    model = ESARMSTAForGeneration.from_pretrained(path).eval()
    saved = any((Path(path) / n).exists() for n in ("processor_config.json", "preprocessor_config.json"))
    processor = ESARMProcessor.from_pretrained(path) if saved else None
    started = time.perf_counter()
    first = animate_rows(model, rows, processor, emotion=labels[0], seed=seed)
    second = animate_rows(model, rows, processor, emotion=labels[1], seed=seed)
    scores = lipsync_table(rows, first, None, rig)["model"]
    scores["two_label_lip_motion_r"] = _motion_correlation(first, second, LIPS)
    scores["jaw_std"] = float(np.mean([np.std(b[:, JAW_OPEN]) for b in first]))
    scores["seconds"] = time.perf_counter() - started
    return scores


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="STA model folders (save_pretrained or Trainer checkpoints)")
    parser.add_argument("--heldout", required=True, help="held-out sets folder (esarm.data.heldout)")
    parser.add_argument("--split", default="validation", choices=list(heldout.SPLITS))
    parser.add_argument("--train", help="corpus whose train split fits the log-mel probe")
    parser.add_argument("--max_train_clips", type=int, default=512)
    parser.add_argument("--labels", nargs=2, default=["neutral", "happy"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write all scores here")
    args = parser.parse_args()

    rows = list(load_from_disk(args.heldout)[args.split].with_format("numpy"))
    rig = resolve_rig(None)
    labels = tuple(args.labels)
    probe = None
    if args.train:
        train = load_from_disk(args.train)["train"]
        train = train.select(range(min(args.max_train_clips, len(train))))
        probe = LogMelProbe().fit(train.with_format("numpy"))
    results = {name: scores for name, scores in lipsync_table(rows, None, probe, rig).items()}
    results["ground truth"]["two_label_lip_motion_r"] = generator_two_label(rows, args.split, args.seed, labels)
    for path in args.models:
        results[path] = model_scores(path, rows, rig, labels, args.seed)
    keys = ("r_jaw", "r_aperture", "closure_jaw", "closure_aperture", "lag_ms", "two_label_lip_motion_r", "jaw_std")
    print(f"{args.split} ({len(rows)} clips) | " + " | ".join(keys))
    for name, scores in results.items():
        cells = [f"{scores.get(k, math.nan):.3f}" for k in keys]
        print(f"{name} | " + " | ".join(cells))
    if args.json:
        clean = {n: {k: (v if math.isfinite(v) else None) for k, v in s.items()} for n, s in results.items()}
        Path(args.json).write_text(json.dumps({"split": args.split, "labels": labels, "results": clean}, indent=2))


if __name__ == "__main__":
    main()
