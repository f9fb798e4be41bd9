"""Expressiveness and realism of the upper face for several decodings of a run's models: greedy, sampled, greedy
mouth + sampled eyes and brows (and the RL policy, greedy, when the run has one).

    python benchmarks/realism.py --run_dir runs/tiny --splits validation test --seeds 0 1 2

Per decoding (:func:`esarm.evaluation.realism.expressiveness_table`): the per-region motion ratio generated /
captured, blinks per minute and blink duration (the capture's in the last row), FDD (mm², captured minus
generated), the held-out accuracy of a classifier telling captured from generated upper-face windows (0.5 = cannot
tell), LVE and EVE (mm). Mean over ``--seeds`` (the seed of the sampled decodings), then the spread (std) over
seeds. The row ``prior/reconstruction`` is the motion prior's encode + decode of the capture itself: what any
decoding of its tokens can reach at best (a realism accuracy near 1 there says the prior's decoder, not the STA
model, gives the animation away); the column ``vs prior`` is the realism test of each decoding against those
reconstructions instead of the capture (whether the STA model's choice of tokens gives it away). The tables go to
stdout and, with ``--output``, to a markdown file beside a json of every number.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from datasets import concatenate_datasets

from esarm.data.collators import STACollator
from esarm.data.loading import even_spread, load_split
from esarm.evaluation import metrics
from esarm.evaluation.realism import (
    DECODINGS,
    decoding_config,
    expressiveness_table,
    format_table,
    generate_animations,
    measure_animations,
)
from esarm.evaluation.rollouts import reconstruct
from esarm.evaluation.significance import clips_needed, paired_bootstrap, paired_standard_deviation
from esarm.labels import model_speakers
from esarm.modeling_sta import ESARMSTAForGeneration
from esarm.rig import resolve_rig


def load_models(run_dir: Path) -> dict[str, ESARMSTAForGeneration]:
    """The run's STA model and, when stage 5 saved one, its RL policy."""
    models = {"sta": ESARMSTAForGeneration.from_pretrained(run_dir / "sta").eval()}
    if (run_dir / "rl" / "config.json").is_file():
        models["rl"] = ESARMSTAForGeneration.from_pretrained(run_dir / "rl").eval()
    return models


def aggregate(tables: list[dict[str, dict[str, float]]]) -> tuple[dict, dict]:
    """Mean and std over seeds of every number of every row (``nan`` entries skipped)."""
    mean, spread = {}, {}
    for name in tables[0]:
        mean[name], spread[name] = {}, {}
        for key in tables[0][name]:
            values = np.asarray([t[name][key] for t in tables], dtype=float)
            finite = values[np.isfinite(values)]
            mean[name][key] = float(finite.mean()) if len(finite) else float("nan")
            spread[name][key] = float(finite.std()) if len(finite) else float("nan")
    return mean, spread


def reconstruction_row(reconstructions, targets, rows, collator: STACollator, rig) -> dict[str, float]:
    """The measures of the motion prior's reconstruction of each clip's capture (the STA model's frozen prior)."""
    speakers = [str(r["speaker"]) for r in rows]
    groups = speakers if len(set(speakers)) >= 2 else [str(i) for i in range(len(rows))]
    return measure_animations(reconstructions, targets, groups, rig, float(collator.fps))


def paired_comparison(sta, rows, collator: STACollator, rig, first: str, second: str, seed: int = 0) -> str:
    """Per-clip LVE and EVE of two decodings of the STA model (seed ``seed``): the paired bootstrap of the
    difference ``second - first`` and the clips a difference of that size needs."""
    targets = [np.asarray(r["blendshapes"], dtype=np.float32) for r in rows]
    per_clip = {}
    for name in (first, second):
        animations = generate_animations(sta, collator, rows, decoding_config(DECODINGS[name]), seed)
        pairs = [(a[: min(len(a), len(t))], t[: min(len(a), len(t))]) for a, t in zip(animations, targets)]
        per_clip[name] = {
            measure: np.asarray(function([a for a, _ in pairs], [t for _, t in pairs], rig, reduction="sequences"))
            for measure, function in (("LVE", metrics.lve), ("EVE", metrics.eve))
        }
    lines = [f"paired bootstrap over {len(rows)} clips, {second} - {first} (seed {seed}, 10000 resamples):"]
    for measure in ("LVE", "EVE"):
        a, b = per_clip[second][measure], per_clip[first][measure]
        difference, (low, high), p_value = paired_bootstrap(a, b)
        std = paired_standard_deviation(a, b)
        needed = clips_needed(difference, std) if difference != 0 else float("inf")
        lines.append(f"- {measure}: {difference:+.3f} mm, 95 % CI [{low:+.3f}, {high:+.3f}], p = {p_value:.4f}; "
                     f"per-clip std {std:.3f} mm, clips needed for this difference: {needed}")  # fmt: skip
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    run_dir = Path(args.run_dir)
    corpus = args.dataset or str(run_dir / "corpus")
    split = concatenate_datasets([load_split(corpus, name) for name in args.splits])
    split = even_spread(split, args.max_clips)
    rows = [split[i] for i in range(len(split))]
    models = load_models(run_dir)
    collator = STACollator(speakers=model_speakers(run_dir / "sta"), fps=models["sta"].config.fps)
    rig = resolve_rig(args.rig_path)
    decodings = {name: DECODINGS[name] for name in args.decodings}
    targets = [np.asarray(r["blendshapes"], dtype=np.float32) for r in rows]
    reconstructions, _ = reconstruct(models["sta"].motion_prior, targets)
    tables = []
    for seed in args.seeds:
        table = {}
        for model_name, model in models.items():
            # the RL policy is measured greedy only: the question is whether RL beats the three decodings of the STA
            chosen = decodings if model_name == "sta" else {"greedy": DECODINGS["greedy"]}
            table.update(expressiveness_table({model_name: model}, rows, collator, rig, chosen, seed=seed,
                                              reconstructions=reconstructions))  # fmt: skip
        tables.append(table)
    reference = reconstruction_row(reconstructions, targets, rows, collator, rig)
    for table in tables:
        table["prior/reconstruction"] = reference
    mean, spread = aggregate(tables)
    speakers = sorted({str(r["speaker"]) for r in rows})
    text = "\n\n".join([
        f"{len(rows)} clips of {', '.join(args.splits)} ({len(speakers)} speakers), seeds {args.seeds}; "
        f"realism test held out {'speakers' if len(speakers) >= 2 else 'clips (one speaker)'}",
        "mean over seeds:\n" + format_table(mean),
        "std over seeds:\n" + format_table(spread, capture_row=False),
    ])  # fmt: skip
    if args.paired:
        text += "\n\n" + paired_comparison(models["sta"], rows, collator, rig, *args.paired, seed=args.seeds[0])
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
        output.with_suffix(".json").write_text(json.dumps({"mean": mean, "std": spread, "per_seed": tables}, indent=1))
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", required=True, help="Pipeline run folder with sta/ (and rl/), read only.")
    parser.add_argument("--dataset", default=None, help="Corpus folder (default <run_dir>/corpus).")
    parser.add_argument("--splits", nargs="+", default=["test"], help="Held-out splits, measured together.")
    parser.add_argument("--max_clips", type=int, default=None, help="At most this many clips, spread evenly.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--decodings", nargs="+", default=list(DECODINGS), choices=list(DECODINGS))
    parser.add_argument("--rig_path", default=None, help="Face rig .npz (default $ESARM_RIG / the embedded rig).")
    parser.add_argument("--paired", nargs=2, default=None, choices=list(DECODINGS), metavar="DECODING",
                        help="Also a paired bootstrap over clips of the LVE / EVE of two decodings, e.g. greedy "
                        "greedy_mouth.")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None, help="Markdown file for the tables (a .json beside it).")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    print(run(args))


if __name__ == "__main__":
    main()
