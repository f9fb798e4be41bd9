"""Lip sync on the real-speech set (esarm.data.real_speech): saved STA models beside the loudness envelope, the
log-mel probe, the phone-rules animator and uLipSync, on the whole set and on its two kinds of phone labels.

    python benchmarks/real_speech.py runs/tiny/sta runs/tiny/rl --train runs/tiny/corpus
    python benchmarks/real_speech.py --json runs/real_speech.json          # the baselines alone

Sets: `real speech` (every clip), `published labels` (arctic_a0009, CMU ARCTIC's own labels) and `aligned labels`
(the clips labelled by PocketSphinx's forced alignment of their published transcripts). The phone-rules animator
shares PocketSphinx's acoustic model with that alignment, which favours it on the aligned clips: compare it on the
published labels too. Measured by the evaluation's own lip-sync step (esarm.evaluation.lipsync_evaluation
.evaluate_lipsync), the models labelled with the first of --labels; --json writes every number.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from datasets import load_from_disk

from esarm.evaluation.lipsync import format_table
from esarm.evaluation.lipsync_evaluation import LipSyncSet, evaluate_lipsync, fit_probe, load_model, real_speech_set
from esarm.rig import resolve_rig
from esarm.utils import atomic_write_json


def label_sets(fps: float) -> list[LipSyncSet]:
    """The whole set, then its clips with published labels, then those with aligned labels."""
    whole = real_speech_set(fps)
    sets = [whole]
    for name, labels in (("published labels", "published"), ("aligned labels", "pocketsphinx alignment")):
        rows = [r for r in whole.rows if r["labels"] == labels]
        sets.append(LipSyncSet(name, f"{whole.description}; {labels} phone labels", rows, baselines=True))
    return sets


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="STA model folders (save_pretrained or a pipeline's sta / rl)")
    parser.add_argument("--train", help="corpus whose train split fits the log-mel probe (none: no probe row)")
    parser.add_argument("--max_train_clips", type=int, default=256)
    parser.add_argument("--labels", nargs=2, default=["neutral", "happy"])
    parser.add_argument("--rig", help="face rig (default: esarm.rig.resolve_rig)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write all scores here")
    args = parser.parse_args(argv)

    models = {str(path): load_model(path) for path in args.models}
    fps = next((float(model.config.fps) for model, _ in models.values()), 30.0)
    probe = fit_probe(load_from_disk(args.train)["train"], args.max_train_clips) if args.train else None
    results = evaluate_lipsync(models, label_sets(fps), probe, resolve_rig(args.rig), args.labels, args.seed)
    print(format_table(results))
    if args.json:
        atomic_write_json(Path(args.json), {"labels": args.labels, "lipsync": results}, sort_keys=False)
    return results


if __name__ == "__main__":
    main()
