"""Ablation of the reward model's ranking sources and the RL stage: reward model -> RL -> held-out evaluation, for
several settings and seeds, on the corpus, STA model and demonstrations of an existing run.

    python benchmarks/rl_ablation.py --run_dir runs/tiny --demos runs/x/demos --output_dir runs/ablation \
        --settings paper ground_truth misalignment --seeds 0 1 2

Each setting is a named list of ranking sources (``SETTINGS``) plus the RL options of :data:`RL_DEFAULTS`
(``--rl_overrides`` changes them for every run); every (setting, seed) writes
``<output_dir>/<setting>/seed<k>/result.json`` and is skipped when that file exists. ``--rl_grid`` sweeps RL
options one at a time around that centre, each value its own RL run on the setting's reward model of that seed
(trained once, shared by the sweep), in ``<output_dir>/<setting>/seed<k>/<option>=<value>/``:

    python benchmarks/rl_ablation.py ... --settings all --seeds 0 --rl_grid '{"learning_rate": [1e-4, 1e-3]}'

The tables (mean +- std over seeds) go to stdout and ``<output_dir>/ablation.md``. Held-out numbers are on the
``test`` split (speakers never seen in training): LVE / EVE (mm), emotion accuracy of an expression classifier
trained on the ground truth of the training split, FDD and the per-region motion ratio generated / ground truth.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esarm.data.loading import load_split
from esarm.data.schema import SAMPLING_RATE, decode_audio_value
from esarm.evaluation.classifier import ExpressionClassifier
from esarm.evaluation.rl_diagnostics import expressiveness
from esarm.evaluation.run import evaluate_model
from esarm.frames import num_frames
from esarm.labels import model_speakers
from esarm.modeling_sta import ESARMSTAForGeneration
from esarm.rig import resolve_rig
from esarm.training.checkpoints import read_done_marker
from esarm.training.reward_config import ESARMRewardTrainingConfig
from esarm.training.reward_trainer import train_reward_model
from esarm.training.rl_config import ESARMRLTrainingConfig
from esarm.training.rl_trainer import train_rl

logger = logging.getLogger(__name__)

SETTINGS: dict[str, list[str]] = {
    "paper": ["epsilon"],
    "ground_truth": ["epsilon", "ground_truth"],
    "misalignment": ["epsilon", "misalignment"],
    "emotion_mismatch": ["epsilon", "emotion_mismatch"],
    "vertex_error": ["epsilon", "vertex_error"],
    "all": ["epsilon", "ground_truth", "misalignment", "emotion_mismatch", "vertex_error"],
    "quality": ["ground_truth", "misalignment", "emotion_mismatch", "vertex_error"],
    "all_pose": ["epsilon", "ground_truth", "misalignment", "emotion_mismatch", "vertex_error"],
    "all_pose_near": ["epsilon", "ground_truth", "misalignment", "emotion_mismatch", "vertex_error"],
    # noise on top of the captured motion (stage 3's ground_truth_epsilons), added to or instead of the policy's
    "all_gt_epsilon": ["epsilon", "ground_truth", "misalignment", "emotion_mismatch", "vertex_error",
                       "ground_truth_epsilon"],
    "gt_epsilon": ["ground_truth_epsilon", "ground_truth", "misalignment", "emotion_mismatch", "vertex_error"],
}  # fmt: skip
# Reward-model options of a setting beyond its ranking sources (docs/rl.md: why the ground truth loses to
# near-greedy rollouts): token embeddings that start from the motion prior's code poses, and ground-truth pairs
# against the near-policy rollouts only.
SETTING_OPTIONS: dict[str, dict[str, Any]] = {
    "all_pose": {"token_embedding_init": "motion_prior"},
    "all_pose_near": {"token_embedding_init": "motion_prior", "ground_truth_negatives": "near_policy"},
}
REWARD_DEFAULTS: dict[str, Any] = dict(
    max_steps=50, learning_rate=1e-3, per_device_train_batch_size=16, max_pairs_per_clip=12, logging_steps=25
)
RL_DEFAULTS: dict[str, Any] = dict(
    max_steps=30, per_device_train_batch_size=4, num_rollouts=4, learning_rate=3e-4, lr_scheduler_type="constant",
    kl_coef=0.05, kl_target=0.05, quality_eval_steps=10, quality_eval_clips=8, early_stopping_patience=2,
    max_eval_clips=0, logging_steps=10,
)  # fmt: skip
REPORTED = ("lve_mm", "eve_mm", "emotion_accuracy", "fdd_mm2", "mouth_audio_correlation",
            "std_ratio_mouth", "std_ratio_eyes", "std_ratio_brows")  # fmt: skip


def _common(output_dir: Path, seed: int) -> dict[str, Any]:
    return dict(output_dir=str(output_dir), seed=seed, save_strategy="no", report_to=[], disable_tqdm=True)


def held_out(model, test, rig, classifier, speakers) -> dict[str, float]:
    """Greedy animations of the test split against its ground truth."""
    results = evaluate_model(
        model, test, rig, speakers=speakers, batch_size=16, classifier=classifier, return_predictions=True,
        progress=False,
    )  # fmt: skip
    results.update(expressiveness(results.pop("predictions"), results.pop("targets")))
    return {key: float(value) for key, value in results.items() if isinstance(value, (int, float))}


def rl_variants(centre: dict[str, Any], grid: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    """One-dimensional sweeps: ``("", centre)`` first, then one ``("<option>=<value>", options)`` per value of each
    swept option, the others at ``centre``."""
    variants = [("", dict(centre))]
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"--rl_grid must map each option to a non-empty list, got {name}: {values!r}")
        if not hasattr(ESARMRLTrainingConfig, name):
            raise ValueError(f"--rl_grid option must be an ESARMRLTrainingConfig field, got {name!r}")
        variants += [(f"{name}={json.dumps(value)}", {**centre, name: value}) for value in values]
    return variants


def rl_summary(rl: dict[str, Any]) -> dict[str, Any]:
    """The RL run's own numbers for the table: training reward first / last (sampled rollouts), per-token KL and
    coefficient reached, updates run, the guard's choice and the held-out validation checks of the first, chosen
    and last policy (the last is what an unguarded run would have kept)."""
    history = rl.get("quality_history") or []
    summary = {key: rl.get(key) for key in ("train_reward_first", "train_reward", "train_kl", "train_kl_coef",
                                           "train_entropy", "train_steps", "quality_best_step", "hacking")}  # fmt: skip
    summary["restored"] = float(rl.get("quality_best_step") == 0) if history else None
    if history:
        chosen = next(h for h in history if h["step"] == rl["quality_best_step"])
        for name, check in (("first", history[0]), ("chosen", chosen), ("last", history[-1])):
            summary.update({f"val_{name}_{key}": value for key, value in check.items() if key != "score"})
    return summary


def run_one(args, setting: str, seed: int, variant: str, rl_options: dict[str, Any], test, rig, classifier,
            speakers) -> dict[str, Any]:  # fmt: skip
    out = Path(args.output_dir) / setting / f"seed{seed}"
    result_path = out / variant / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    started = time.perf_counter()
    torch.manual_seed(seed)
    # a finished reward model of this setting and seed is reused (an RL sweep over one reward model)
    reward_options = {**REWARD_DEFAULTS, **SETTING_OPTIONS.get(setting, {}), **json.loads(args.reward_overrides)}
    reward = read_done_marker(out / "reward_model") or train_reward_model(
        ESARMRewardTrainingConfig(
            dataset_name_or_path=args.demos,
            sta_name_or_path=f"{args.run_dir}/sta",
            ranking_sources=SETTINGS[setting],
            eval_dataset_name_or_path=args.eval_demos,
            **{**reward_options, **_common(out / "reward_model", seed)},
        )  # fmt: skip
    )
    reward_seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "setting": setting, "seed": seed, "variant": variant, "rl_options": rl_options, "reward": reward,
        "reward_seconds": reward_seconds,
    }  # fmt: skip
    if not args.skip_rl:
        rl_dir = out / variant / "rl"
        rl = train_rl(
            ESARMRLTrainingConfig(
                sta_name_or_path=f"{args.run_dir}/sta",
                reward_model_name_or_path=str(out / "reward_model"),
                dataset_name_or_path=f"{args.run_dir}/corpus",
                rig_path=args.rig_path,
                **{**rl_options, **_common(rl_dir, seed)},
            )  # fmt: skip
        )
        policy = ESARMSTAForGeneration.from_pretrained(rl_dir).eval()
        result["rl"] = {k: v for k, v in rl.items() if k != "train_log"}
        result["rl_summary"] = rl_summary(rl)
        result["test"] = held_out(policy, test, rig, classifier, speakers)
    result["seconds"] = time.perf_counter() - started
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=1, default=float))
    return result


def _cell(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "-"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def table(results: list[dict[str, Any]], baseline: dict[str, float]) -> str:
    reward_keys = ("eval_accuracy", "eval_gt_beats_eps_0.02", "eval_accuracy_misalignment",
                   "eval_accuracy_emotion_mismatch", "eval_spearman_return_lve", "eval_spearman_return_eve",
                   "eval_gt_swap_gain_eyes", "eval_gt_swap_gain_mouth")  # fmt: skip
    lines = [
        "| setting | seeds | ε-pair acc | GT > ε0.02 | misaligned acc | emotion-mismatch acc | ρ(R, −LVE) | ρ(R, −EVE) "
        "| eyes swap gain | mouth swap gain |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    settings = list(dict.fromkeys(r["setting"] for r in results))
    for setting in settings:
        rows = [r for r in results if r["setting"] == setting]
        cells = [_cell([r["reward"].get(k) for r in rows]) for k in reward_keys]
        lines.append(f"| {setting} | {len(rows)} | " + " | ".join(cells) + " |")
    runs = list(dict.fromkeys((r["setting"], r.get("variant", "")) for r in results if "test" in r))
    if not runs:
        return "\n".join(lines)
    lines += ["", "Held-out test speakers, greedy (the guard's chosen policy):", "",
              "| setting | seeds | " + " | ".join(REPORTED) + " |", "|---|---|" + "---|" * len(REPORTED)]  # fmt: skip
    lines.append("| STA (no RL) | - | " + " | ".join(f"{baseline.get(k, float('nan')):.3f}" for k in REPORTED) + " |")
    for setting, variant in runs:
        rows = [r for r in results if (r["setting"], r.get("variant", "")) == (setting, variant) and "test" in r]
        cells = [_cell([r["test"].get(k) for r in rows]) for k in REPORTED]
        lines.append(f"| {setting} {variant} | {len(rows)} | " + " | ".join(cells) + " |")
    lines += ["", "RL run (training reward of sampled rollouts; validation checks of the guard, greedy):", "",
              "| setting | " + " | ".join(header for _, header, _ in RL_COLUMNS) + " |",
              "|---|" + "---|" * len(RL_COLUMNS)]  # fmt: skip
    for setting, variant in runs:
        rows = [r for r in results if (r["setting"], r.get("variant", "")) == (setting, variant) and "test" in r]
        summaries = [r.get("rl_summary") or rl_summary(r["rl"]) for r in rows]
        cells = [_cell([s.get(key) for s in summaries], digits) for key, _, digits in RL_COLUMNS]
        lines.append(f"| {setting} {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# (rl_summary key, column header, digits)
RL_COLUMNS = (
    ("train_reward_first", "reward first", 2), ("train_reward", "reward last", 2), ("train_kl", "KL/token", 4),
    ("train_kl_coef", "kl_coef", 3), ("train_steps", "updates", 0), ("quality_best_step", "chosen update", 0),
    ("restored", "STA restored", 2), ("hacking", "hacking", 2), ("val_first_lve_mm", "val LVE first", 3),
    ("val_last_lve_mm", "val LVE last", 3), ("val_first_eve_mm", "val EVE first", 3),
    ("val_last_eve_mm", "val EVE last", 3), ("val_last_std_ratio_eyes", "val eyes ratio last", 3),
    ("val_last_std_ratio_brows", "val brows ratio last", 3), ("val_first_reward", "val return first", 2),
    ("val_last_reward", "val return last", 2),
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", required=True, help="Run folder with corpus/ and sta/ (read only).")
    parser.add_argument("--demos", required=True, help="Demonstrations of stage 3 (with the source rows).")
    parser.add_argument(
        "--eval_demos", default=None, help="Held-out demonstrations of another stage-3 run (default: --demos)."
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--settings", nargs="+", default=["paper"], choices=sorted(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rig_path", default=None)
    parser.add_argument("--test_clips", type=int, default=32)
    parser.add_argument("--skip_rl", action="store_true", help="Only train and diagnose the reward models.")
    parser.add_argument(
        "--reward_overrides", default="{}",
        help="Json object of ESARMRewardTrainingConfig fields over REWARD_DEFAULTS (e.g. more steps for a larger corpus).",
    )  # fmt: skip
    parser.add_argument("--rl_overrides", default="{}", help="Json object of ESARMRLTrainingConfig fields (the centre).")
    parser.add_argument(
        "--rl_grid", default="{}",
        help='Json object {option: [values]}: one RL run per value, the other options at the centre.',
    )  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)

    rig = resolve_rig(args.rig_path)
    speakers = model_speakers(f"{args.run_dir}/sta")
    corpus = f"{args.run_dir}/corpus"
    train, test = load_split(corpus, "train"), load_split(corpus, "test")
    fps = 30.0
    truth = [
        np.asarray(r["blendshapes"], np.float32)[: num_frames(len(decode_audio_value(r["audio"])), fps, SAMPLING_RATE)]
        for r in train
    ]
    classifier = ExpressionClassifier().fit(truth, list(train["emotion"]))
    test = test.select(range(min(args.test_clips, len(test))))
    baseline_path = Path(args.output_dir) / "sta_baseline.json"
    if baseline_path.is_file():
        baseline = json.loads(baseline_path.read_text())
    else:
        sta = ESARMSTAForGeneration.from_pretrained(f"{args.run_dir}/sta").eval()
        baseline = held_out(sta, test, rig, classifier, speakers)
        baseline_path.parent.mkdir(parents=True, exist_ok=True)
        baseline_path.write_text(json.dumps(baseline, indent=1))
    variants = rl_variants({**RL_DEFAULTS, **json.loads(args.rl_overrides)}, json.loads(args.rl_grid))
    results = []
    for setting in args.settings:
        for seed in args.seeds:
            for variant, rl_options in variants:
                results.append(run_one(args, setting, seed, variant, rl_options, test, rig, classifier, speakers))
                logger.info("%s %s seed %d done in %.0f s", setting, variant, seed, results[-1]["seconds"])
    text = table(results, baseline)
    (Path(args.output_dir) / "ablation.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
