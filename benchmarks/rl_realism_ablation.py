"""Does RL restore the motion supervised learning averages away? The ablation of the reward model's motion input,
region-wise RL and the iterated reward model, against the three decodings of the STA model, over seeds.

    python benchmarks/rl_realism_ablation.py --run_dir runs/small --config configs/small.yaml \
        --output_dir runs/rl_realism --seeds 0 1 2

``--run_dir`` is a finished pipeline run (its ``corpus``, ``sta``, ``demos`` and ``heldout`` folders are read, never
written); ``--config`` its pipeline config, whose ``reward``, ``rl`` and ``demos`` sections are the centre every
variant changes (:data:`VARIANTS`):

- ``paper``: the paper's reward model on code embeddings, ranked by the epsilon source alone; RL of every group;
- ``motion_rm``: a reward model on the frozen prior's decoded motion and its velocities, with the config's ranking
  sources; RL of every group;
- ``motion_rm+region``: the same reward model; RL updates the eyes' and brows' heads only (the mouth frozen);
- ``motion_rm+region+iterated``: the same, in two rounds with the reward model retrained on the first round's
  policy between them (:func:`esarm.training.iterated_rl.train_iterated_rl`).

Per seed, the baselines are the STA model decoded greedy, sampled (seeded) and greedy mouth + sampled eyes and
brows. Every policy and baseline is measured on the ``test`` split (speakers training never saw) by
:func:`esarm.evaluation.realism.measure_animations` (motion ratios, blinks, the realism classifier held out by
speaker, FDD, LVE, EVE), and its lips on the fixed held-out voice sets (r(jawOpen, phoneme openness)). Each
``(variant, seed)`` writes ``<output_dir>/<variant>/seed<k>/result.json`` and is skipped when that file exists; a
reward model is shared by the variants that use the same one. The table (mean ± std over seeds) goes to stdout and
``<output_dir>/ablation.md``.
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
import yaml

from esarm.data.collators import STACollator
from esarm.data.loading import even_spread, load_split
from esarm.evaluation.lipsync_evaluation import evaluate_lipsync, heldout_sets
from esarm.evaluation.realism import (
    DECODINGS,
    decoding_config,
    generate_animations,
    measure_animations,
    realism_accuracy,
)
from esarm.evaluation.rollouts import reconstruct
from esarm.labels import model_speakers
from esarm.modeling_sta import ESARMSTAForGeneration
from esarm.rig import resolve_rig
from esarm.training.checkpoints import read_done_marker
from esarm.training.demos_config import ESARMDemoTrainingConfig
from esarm.training.iterated_rl import train_iterated_rl
from esarm.training.reward_config import ESARMRewardTrainingConfig
from esarm.training.reward_trainer import train_reward_model
from esarm.training.rl_config import ESARMRLTrainingConfig

logger = logging.getLogger(__name__)

# reward model name -> fields over the config's reward section
REWARD_MODELS: dict[str, dict[str, Any]] = {
    "tokens_epsilon": {"ranking_sources": ["epsilon"], "model_overrides": {}},
    "motion": {"model_overrides": {"motion_input": "blendshapes"}},
}
UPPER_FACE = ["eyes", "brows"]
# variant -> (reward model, fields over the config's rl section, RL rounds)
VARIANTS: dict[str, tuple[str, dict[str, Any], int]] = {
    "paper": ("tokens_epsilon", {"trainable_groups": None}, 1),
    "motion_rm": ("motion", {"trainable_groups": None}, 1),
    "motion_rm+region": ("motion", {"trainable_groups": UPPER_FACE}, 1),
    "motion_rm+region+iterated": ("motion", {"trainable_groups": UPPER_FACE}, 2),
}
BASELINES = ("greedy", "sampled", "greedy_mouth")
COLUMNS = (
    ("std_ratio_eyes", "eyes", 2), ("std_ratio_brows", "brows", 2), ("std_ratio_mouth", "mouth", 2),
    ("blink_rate_per_min", "blinks/min", 1), ("realism_accuracy", "realism acc", 3),
    ("realism_accuracy_vs_prior", "vs prior", 3), ("fdd_mm2", "FDD mm²", 3),
    ("lve_mm", "LVE mm", 3), ("eve_mm", "EVE mm", 3), ("r_jaw_validation", "r val voices", 3),
    ("r_jaw_test", "r Flite voices", 3),
)  # fmt: skip
REWARD_COLUMNS = (
    ("eval_gt_beats_eps_0.02", "capture > ε0.02"), ("eval_accuracy_misalignment", "misaligned"),
    ("eval_spearman_return_lve", "ρ(R, −LVE)"), ("eval_accuracy", "ε-pair acc"),
)  # fmt: skip


def _common(output_dir: Path, seed: int) -> dict[str, Any]:
    return dict(output_dir=str(output_dir), seed=seed, save_strategy="no", report_to=[], disable_tqdm=True)


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=float))


class Measures:
    """The test clips, their capture, the held-out voice sets and the rig: what every model is measured on."""

    def __init__(self, run_dir: Path, test_clips: int, rig_path: str | None, lipsync_clips: int | None):
        test = even_spread(load_split(run_dir / "corpus", "test"), test_clips)
        self.rows = [test[i] for i in range(len(test))]
        self.targets = [np.asarray(r["blendshapes"], dtype=np.float32) for r in self.rows]
        self.groups = [str(r["speaker"]) for r in self.rows]
        self.rig = resolve_rig(rig_path)
        sta = run_dir / "sta"
        self.collator = STACollator(speakers=model_speakers(sta), fps=30.0)
        self.sets = heldout_sets(run_dir / "heldout", max_clips=lipsync_clips)
        prior = ESARMSTAForGeneration.from_pretrained(sta).motion_prior.eval()
        self.reconstructions, _ = reconstruct(prior, self.targets)

    def prior_row(self) -> dict[str, float]:
        """The motion prior's reconstruction of the capture: what any decoding of its tokens reaches at best."""
        row = measure_animations(self.reconstructions, self.targets, self.groups, self.rig, 30.0)
        return {key: float(value) for key, value in row.items()}

    def measure(self, model, decoding: str, seed: int) -> dict[str, float]:
        animations = generate_animations(model, self.collator, self.rows, decoding_config(DECODINGS[decoding]), seed)
        row = measure_animations(animations, self.targets, self.groups, self.rig, 30.0)
        # against the prior's reconstructions: whether the choice of tokens, not the prior's decoder, gives it away
        row["realism_accuracy_vs_prior"] = realism_accuracy(self.reconstructions, animations, self.groups)[
            "realism_accuracy"
        ]
        if decoding == "greedy":  # the lips of a greedy policy on the held-out voices
            scores = evaluate_lipsync({"model": (model, None)}, self.sets, None, self.rig, seed=seed)
            for name, table in scores.items():
                row[f"r_jaw_{name}"] = table["model"]["r_jaw"]
        return {key: float(value) for key, value in row.items()}


def reward_model(args, name: str, seed: int, config: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The reward model ``name`` of ``seed`` (trained once, shared by the variants that use it)."""
    folder = Path(args.output_dir) / "reward_models" / f"{name}_seed{seed}"
    done = read_done_marker(folder)
    if done is None:
        section = {**config.get("reward", {}), **REWARD_MODELS[name]}
        done = train_reward_model(
            ESARMRewardTrainingConfig(
                dataset_name_or_path=str(Path(args.run_dir) / "demos"),
                sta_name_or_path=str(Path(args.run_dir) / "sta"),
                **{**section, **_common(folder, seed)},
            )
        )
    return folder, done


def run_variant(args, variant: str, seed: int, config: dict[str, Any], measures: Measures) -> dict[str, Any]:
    out = Path(args.output_dir) / variant / f"seed{seed}"
    result_path = out / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    started = time.perf_counter()
    torch.manual_seed(seed)
    reward_name, rl_fields, rounds = VARIANTS[variant]
    reward_dir, reward = reward_model(args, reward_name, seed, config)
    run_dir = Path(args.run_dir)
    rl = ESARMRLTrainingConfig(
        sta_name_or_path=str(run_dir / "sta"),
        reward_model_name_or_path=str(reward_dir),
        dataset_name_or_path=str(run_dir / "corpus"),
        rig_path=args.rig_path,
        **{**config.get("rl", {}), **rl_fields, **json.loads(args.rl_overrides), **_common(out / "unused", seed)},
    )  # fmt: skip
    retrain = ESARMRewardTrainingConfig(
        **{**config.get("reward", {}), **REWARD_MODELS[reward_name], **_common(out / "unused", seed),
           "ranking_sources": ["ground_truth", "misalignment"]}
    )  # fmt: skip
    demos = ESARMDemoTrainingConfig(
        **{**config.get("demos", {}), "emotion_mismatch": False, **_common(out / "unused", seed)}
    )
    iterated = train_iterated_rl(rl, retrain, demos, rounds, out)
    policy = ESARMSTAForGeneration.from_pretrained(iterated["policy"]).eval()
    rounds_record = [{k: v for k, v in r["rl"].items() if k != "train_log"} for r in iterated["rounds"]]
    result = {
        "variant": variant, "seed": seed, "reward": reward, "rl_rounds": rounds_record,
        "retrained_reward": [r.get("reward") for r in iterated["rounds"] if r.get("reward")],
        "test": measures.measure(policy, "greedy", seed), "seconds": time.perf_counter() - started,
    }  # fmt: skip
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(_json(result), indent=1))
    return result


def baselines(args, seed: int, measures: Measures) -> dict[str, dict[str, float]]:
    path = Path(args.output_dir) / "baselines" / f"seed{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    sta = ESARMSTAForGeneration.from_pretrained(Path(args.run_dir) / "sta").eval()
    rows = {decoding: measures.measure(sta, decoding, seed) for decoding in BASELINES}
    rows["prior"] = measures.prior_row()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    return rows


def _cell(values: list[Any], digits: int) -> str:
    values = [float(v) for v in values if v is not None and np.isfinite(float(v))]
    if not values:
        return "-"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}" if len(values) > 1 else f"{values[0]:.{digits}f}"


def guard_kept(rounds: list[dict[str, Any]]) -> float | None:
    """1.0 when the held-out guard let an RL round's policy replace its start, 0.0 when it kept the start in every
    round, ``None`` when no guard ran (``quality_eval_steps: 0``: the policy is RL's last one)."""
    decisions = [r.get("guard_accepted") for r in rounds if r.get("quality_history")]
    if not decisions:
        return None
    return float(any(bool(d) for d in decisions))


def table(results: list[dict[str, Any]], base: list[dict[str, dict[str, float]]]) -> str:
    capture = [b["greedy"]["capture_blink_rate_per_min"] for b in base]
    lines = [
        f"Test speakers, {len(base)} seed(s), mean ± std over seeds (capture: {np.mean(capture):.1f} blinks/min; "
        "realism acc 0.5 = cannot be told from the capture):",
        "",
        "| policy | " + " | ".join(title for _, title, _ in COLUMNS) + " | guard kept RL |",
        "|---|" + "---:|" * (len(COLUMNS) + 1),
    ]
    for decoding in (*BASELINES, "prior"):
        cells = [_cell([b[decoding].get(key) for b in base], digits) for key, _, digits in COLUMNS]
        name = "motion prior's reconstruction of the capture" if decoding == "prior" else f"STA {decoding}"
        lines.append(f"| {name} | " + " | ".join(cells) + " | - |")
    variants = list(dict.fromkeys(r["variant"] for r in results))
    for variant in variants:
        rows = [r for r in results if r["variant"] == variant]
        cells = [_cell([r["test"].get(key) for r in rows], digits) for key, _, digits in COLUMNS]
        kept = [guard_kept(r["rl_rounds"]) for r in rows]
        guard = "-" if any(k is None for k in kept) else f"{np.mean(kept):.2f}"
        lines.append(f"| RL {variant} | " + " | ".join(cells) + f" | {guard} |")
    lines += ["", "Reward models (held-out demonstrations):", "",
              "| reward model of | " + " | ".join(title for _, title in REWARD_COLUMNS) + " |",
              "|---|" + "---:|" * len(REWARD_COLUMNS)]  # fmt: skip
    for variant in variants:
        rows = [r for r in results if r["variant"] == variant]
        lines.append(f"| {variant} | " + " | ".join(_cell([r["reward"].get(k) for r in rows], 2) for k, _ in REWARD_COLUMNS)
                     + " |")  # fmt: skip
        retrained = [r["retrained_reward"][-1] for r in rows if r["retrained_reward"]]
        if retrained:
            lines.append(f"| {variant}, retrained | "
                         + " | ".join(_cell([r.get(k) for r in retrained], 2) for k, _ in REWARD_COLUMNS) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", required=True, help="A finished pipeline run (read only).")
    parser.add_argument("--config", required=True, help="Its pipeline config (yaml): the reward / rl / demos centre.")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rig_path", default=None)
    parser.add_argument("--test_clips", type=int, default=96, help="Test clips, spread over speakers and sentences.")
    parser.add_argument("--lipsync_clips", type=int, default=None, help="Clips per held-out voice set (None: all).")
    parser.add_argument("--rl_overrides", default="{}", help="Json object of ESARMRLTrainingConfig fields.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    config = yaml.safe_load(Path(args.config).read_text())
    measures = Measures(Path(args.run_dir), args.test_clips, args.rig_path, args.lipsync_clips)
    base, results = [], []
    for seed in args.seeds:
        base.append(baselines(args, seed, measures))
        for variant in args.variants:
            results.append(run_variant(args, variant, seed, config, measures))
            logger.info("%s seed %d done in %.0f s", variant, seed, results[-1]["seconds"])
    text = table(results, base)
    Path(args.output_dir, "ablation.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
