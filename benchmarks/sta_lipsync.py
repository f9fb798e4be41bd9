"""Lip sync of many STA checkpoints on the fixed held-out sets and the real-speech set: one table, the checkpoints in the order given (the
curve of held-out lip sync against training steps).

    python benchmarks/sta_lipsync.py --heldout runs/heldout --splits validation --train runs/tiny/corpus \
        runs/tiny/sta/checkpoint-100 runs/tiny/sta/checkpoint-200 runs/tiny/sta

Each model is measured by the evaluation's own lip-sync step (esarm.evaluation.lipsync_evaluation.run_lipsync, what
`esarm evaluate --lipsync-heldout` and the pipeline's evaluation stage run): r(jawOpen or lip aperture, phoneme
openness), bilabial closure, lag, the mean-removed lip-motion correlation between two emotion labels on the same
audio (--labels) and jawOpen's spread, beside the loudness envelope, the log-mel probe fitted on --train's train split
and the ground-truth generator (whose two-label value replays the generator with the two labels). --heldout is built
there when missing; the real-speech set (esarm.data.real_speech, recordings of real people) adds the phone-rules and
uLipSync baselines, and --no_real_speech leaves it out. Tune on the validation split; report the test split once.
--json writes every number.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from datasets import load_from_disk

from esarm.data.heldout import SPLITS
from esarm.evaluation.lipsync import format_table
from esarm.evaluation.lipsync_evaluation import LipSyncSettings, load_model, run_lipsync
from esarm.rig import resolve_rig
from esarm.utils import atomic_write_json

logger = logging.getLogger("sta_lipsync")

CURVE_COLUMNS = ("r_jaw", "r_aperture", "closure_jaw", "closure_aperture", "lag_ms", "two_label_r", "jaw_std")


def curve_table(results: dict[str, dict[str, dict[str, float]]], models: list[str]) -> str:
    """One line per model (in the given order) and set: the columns of the training curve."""
    lines = ["| set | model | " + " | ".join(CURVE_COLUMNS) + " |", "|" + "---|" * (len(CURVE_COLUMNS) + 2)]
    for set_name, sources in results.items():
        for name in models:
            cells = [f"{sources[name].get(key, float('nan')):.3f}" for key in CURVE_COLUMNS]
            lines.append(f"| {set_name} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="STA model folders (save_pretrained or Trainer checkpoints)")
    parser.add_argument("--heldout", required=True, help="held-out sets folder (esarm.data.heldout)")
    parser.add_argument("--splits", "--split", nargs="+", default=["validation"], choices=list(SPLITS))
    parser.add_argument("--train", help="corpus whose train split fits the log-mel probe")
    parser.add_argument("--max_train_clips", type=int, default=256)
    parser.add_argument("--num_sentences", type=int, help="sentences per voice when --heldout is built")
    parser.add_argument("--max_clips", type=int, help="at most this many clips per set")
    parser.add_argument("--labels", nargs=2, default=["neutral", "happy"])
    parser.add_argument("--rig", help="face rig (default: esarm.rig.resolve_rig)")
    parser.add_argument("--no_real_speech", action="store_true", help="leave out the real-speech set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write all scores here")
    args = parser.parse_args(argv)

    settings = LipSyncSettings(
        args.heldout, args.splits, args.num_sentences, args.max_clips, args.max_train_clips, args.labels,
        real_speech=not args.no_real_speech,
    )
    names = {str(path): load_model(path) for path in args.models}
    train = load_from_disk(args.train)["train"] if args.train else None
    results = run_lipsync(names, None, None, train, resolve_rig(args.rig), settings, args.seed)
    print(format_table(results["lipsync"]))
    if names:
        print()
        print(curve_table(results["lipsync"], list(names)))
    if args.json:
        atomic_write_json(Path(args.json), {"labels": args.labels, **results}, sort_keys=False)
    return results


if __name__ == "__main__":
    main()
