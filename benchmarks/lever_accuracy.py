"""Accuracy of the CPU inference levers on a *trained* STA model: LVE, EVE, blendshape MAE and lip sync on the test
split of its corpus, each lever against the float model as saved.

    python benchmarks/lever_accuracy.py --run_dir runs/tiny --levers fp32 sdpa+enc20 int8+sdpa+enc20

``benchmarks/generation.py --levers`` times the levers on the random-init ``base`` preset, whose near-tied logits
flip on tiny feature changes, so its token agreement overstates what a lever changes in a trained model. This script
measures what a user sees: the metrics of ``esarm evaluate`` (greedy, each clip's own labels), plus the token
blendshape MAE against the float model's animation of the same clip. Lever names are those of
``benchmarks/generation.py`` (``fp32`` first: the reference). Only levers the model supports apply: the encoder
levers need a WavLM speech encoder (the tiny and base presets; ``small`` hears log-mel features).
"""

from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path

import numpy as np
import torch

from esarm.data.loading import load_split
from esarm.evaluation.run import evaluate_model
from esarm.inference import lever_settings, optimize_for_inference
from esarm.modeling_sta import ESARMSTAForGeneration
from esarm.rig import resolve_rig

logger = logging.getLogger("lever_accuracy")

REPORTED = ("lve_mm", "eve_mm", "blendshape_mae", "mouth_audio_correlation")


def apply(model: ESARMSTAForGeneration, lever: str) -> ESARMSTAForGeneration:
    """A copy of ``model`` with the lever (:func:`esarm.inference.lever_settings`); ``fp32`` is the model as saved."""
    return optimize_for_inference(copy.deepcopy(model), **lever_settings(lever))


@torch.no_grad()
def main(argv: list[str] | None = None) -> list[dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", required=True, help="pipeline run folder with corpus/ and sta/")
    parser.add_argument("--levers", nargs="+", default=["fp32", "sdpa+enc20", "int8+sdpa+enc20"])
    parser.add_argument("--split", default="test")
    parser.add_argument("--max_clips", type=int, default=None)
    parser.add_argument("--rig", default=None, help="face rig (default: esarm.rig.resolve_rig)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.levers[0] != "fp32":
        raise ValueError(f"--levers must start with fp32 (the reference), got {args.levers[0]!r}")
    torch.set_num_threads(args.threads)
    run = Path(args.run_dir)
    model = ESARMSTAForGeneration.from_pretrained(run / "sta").eval()
    split = load_split(str(run / "corpus"), args.split)
    rig = resolve_rig(args.rig)
    rows, reference = [], None
    print(f"| lever | {' | '.join(REPORTED)} | blendshape MAE vs float |")
    print("|---|" + "---|" * (len(REPORTED) + 1))
    for lever in args.levers:
        results = evaluate_model(apply(model, lever), split, rig, max_samples=args.max_clips, batch_size=16,
                                 return_predictions=True, progress=False)  # fmt: skip
        predictions = [np.asarray(p) for p in results.pop("predictions")]
        if reference is None:
            reference = predictions
        mae = float(np.mean([np.abs(p - r).mean() for p, r in zip(predictions, reference)]))
        rows.append({"lever": lever, **{key: float(results[key]) for key in REPORTED}, "mae_vs_float": mae})
        print(f"| {lever} | " + " | ".join(f"{rows[-1][key]:.4f}" for key in REPORTED) + f" | {mae:.4f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
