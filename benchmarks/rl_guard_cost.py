"""Time one check of the RL stage's held-out guard: greedy animations of validation clips, scored by the reward model
and measured per clip against the capture (``evaluate_policy(per_clip=True)``), at several numbers of clips.

    python benchmarks/rl_guard_cost.py --corpus runs/small/corpus --config configs/small.yaml --clips 64 192

The policy and the reward model are random-init models of the config's ``motion_prior`` / ``sta`` / ``reward``
architectures (the
speed of greedy decoding does not depend on the weights); the clips are an even spread of ``--split``. Prints one
line per number of clips: the seconds of one check on one thread.
"""

from __future__ import annotations

import argparse
import time

import torch

from esarm import ESARMMotionPriorConfig, ESARMRewardModel, ESARMRewardModelConfig, ESARMSTAConfig
from esarm.data.loading import even_spread, load_split
from esarm.evaluation.policy import evaluate_policy
from esarm.modeling_sta import ESARMSTAForGeneration
from esarm.rig import resolve_rig
from esarm.training.args import build_model_config, load_config_file, parse_overrides
from esarm.training.rl_trainer import PolicyInputCollator


def guard_check_seconds(corpus: str, config_path: str, clips: list[int], split: str = "validation",
                        batch_size: int = 8) -> dict[int, float]:  # fmt: skip
    """Seconds of one guard check per number of ``clips`` (one thread, a random-init policy and reward model)."""
    config = load_config_file(config_path)
    sections = {stage: config.get(stage, {}) for stage in ("motion_prior", "sta", "reward")}
    torch.manual_seed(0)
    prior_config = build_model_config(
        ESARMMotionPriorConfig, sections["motion_prior"].get("model_config", "tiny"),
        sections["motion_prior"].get("model_overrides"),
    )  # fmt: skip
    sta_config = build_model_config(
        ESARMSTAConfig, sections["sta"].get("model_config", "tiny"),
        {**parse_overrides(sections["sta"].get("model_overrides")), "motion_prior_config": prior_config.to_dict()},
    )  # fmt: skip
    geometry = {key: getattr(sta_config, key) for key in ("num_groups", "codebook_size", "frames_per_token", "fps")}
    reward_config = build_model_config(  # with the policy's token geometry
        ESARMRewardModelConfig, sections["reward"].get("model_config", "tiny"),
        {**parse_overrides(sections["reward"].get("model_overrides")), **geometry},
    )  # fmt: skip
    policy, reward_model = ESARMSTAForGeneration(sta_config).eval(), ESARMRewardModel(reward_config).eval()
    rows = load_split(corpus, split)
    collator = PolicyInputCollator(speakers=[], fps=float(sta_config.fps))
    rig = resolve_rig(None)
    seconds = {}
    for count in clips:
        subset = even_spread(rows, count)
        start = time.perf_counter()
        evaluate_policy(policy, reward_model, subset, collator, batch_size, rig, per_clip=True)
        seconds[len(subset)] = time.perf_counter() - start
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="A corpus folder (save_to_disk) with the split.")
    parser.add_argument("--config", default="configs/small.yaml", help="Pipeline config of the architectures.")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--clips", type=int, nargs="+", default=[64, 192])
    parser.add_argument("--batch_size", type=int, default=8, help="per_device_eval_batch_size of the RL stage.")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for count, seconds in guard_check_seconds(args.corpus, args.config, args.clips, args.split, args.batch_size).items():
        print(f"{args.config}: one guard check on {count} {args.split} clips: {seconds:.1f} s")


if __name__ == "__main__":
    main()
