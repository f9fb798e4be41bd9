"""Reward models on code embeddings (the paper) vs on the decoded motion, trained on the same demonstrations.

    python benchmarks/reward_motion_input.py --run_dir runs/tiny --output_dir runs/rm_motion --seeds 0 1 2

For each ``--motion_inputs`` entry and seed, a reward model with the tiny preset's width and the run's motion
prior (its STA model's, frozen inside the reward model for ``blendshapes``) is trained by stage 4
(:func:`esarm.training.reward.train_reward_model`) on ``<run_dir>/demos`` with the ranking sources of
``configs/tiny.yaml``, then evaluated on the held-out demonstrations. Printed (mean ± std over seeds): pairwise
accuracy, the capture ranked above the epsilon = 0.02 rollouts of its clip, misaligned audio ranked below, and
Spearman's rho between the return and -LVE across a clip's rollouts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from esarm.configuration_esarm import ESARMRewardModelConfig
from esarm.labels import model_speakers
from esarm.modeling_reward import ESARMRewardModel
from esarm.modeling_sta import ESARMSTAForGeneration
from esarm.training.reward import ESARMRewardConfig, train_reward_model

# the reward stage of configs/tiny.yaml
SOURCES = ["epsilon", "ground_truth", "misalignment", "emotion_mismatch", "vertex_error"]
TRAINING = dict(max_pairs_per_clip=12, max_steps=50, learning_rate=1e-3, per_device_train_batch_size=16,
                logging_steps=25)  # fmt: skip
REPORTED = ("eval_accuracy", "eval_gt_beats_eps_0.02", "eval_accuracy_misalignment", "eval_spearman_return_lve")
WIDTH = ("audio_encoder_config", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
         "dropout")  # fmt: skip


def initial_model(run_dir: Path, motion_input: str, folder: Path) -> Path:
    """A fresh reward model of the tiny preset's width on the run's motion prior, saved to ``folder``."""
    sta = ESARMSTAForGeneration.from_pretrained(run_dir / "sta")
    tiny = ESARMRewardModelConfig.tiny().to_dict()
    config = ESARMRewardModelConfig.from_motion_prior_config(
        sta.motion_prior.config, **{key: tiny[key] for key in WIDTH}, motion_input=motion_input,
        num_speakers=len(model_speakers(run_dir / "sta")),
    )  # fmt: skip
    model = ESARMRewardModel(config)
    if motion_input == "blendshapes":
        model.load_motion_prior(sta.motion_prior)
    model.save_pretrained(folder)
    return folder


def run(args: argparse.Namespace) -> str:
    run_dir, output = Path(args.run_dir), Path(args.output_dir)
    results: dict[str, list[dict]] = {}
    for motion_input in args.motion_inputs:
        for seed in args.seeds:
            out = output / motion_input / f"seed{seed}"
            done = out / "result.json"
            if not done.is_file():
                torch.manual_seed(seed)
                start = initial_model(run_dir, motion_input, out / "initial")
                metrics = train_reward_model(ESARMRewardConfig(
                    demos_name_or_path=str(run_dir / "demos"), sta_name_or_path=str(run_dir / "sta"),
                    model_name_or_path=str(start), ranking_sources=SOURCES, output_dir=str(out / "reward_model"),
                    seed=seed, save_strategy="no", report_to=[], disable_tqdm=True, **TRAINING,
                ))  # fmt: skip
                done.write_text(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float))}))
            results.setdefault(motion_input, []).append(json.loads(done.read_text()))
    lines = ["| motion input | seeds | " + " | ".join(REPORTED) + " |", "|---|---:|" + "---:|" * len(REPORTED)]
    for motion_input, runs in results.items():
        cells = []
        for key in REPORTED:
            values = np.asarray([r.get(key, np.nan) for r in runs], dtype=float)
            cells.append(f"{np.nanmean(values):.3f} ± {np.nanstd(values):.3f}")
        lines.append(f"| {motion_input} | {len(runs)} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    (output / "reward_motion_input.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", required=True, help="Pipeline run with demos/ and sta/ (read only).")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--motion_inputs", nargs="+", default=["tokens", "blendshapes"],
                        choices=["tokens", "blendshapes"])  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(run(args))


if __name__ == "__main__":
    main()
