"""benchmarks/realism.py end to end on the micro corpus with a random-init tiny STA model."""

from __future__ import annotations

import json

from esarm import ESARMSTAConfig, ESARMSTAForGeneration
from esarm.data import SyntheticCorpusConfig, build_synthetic_corpus


def test_realism_benchmark_prints_every_decoding_and_the_capture(tmp_path, repo_script):
    build_synthetic_corpus(SyntheticCorpusConfig.micro(), tmp_path / "run" / "corpus", progress=False)
    ESARMSTAForGeneration(ESARMSTAConfig.tiny()).save_pretrained(tmp_path / "run" / "sta")
    benchmark = repo_script("benchmarks/realism.py")
    output = tmp_path / "realism.md"
    benchmark.main(["--run_dir", str(tmp_path / "run"), "--splits", "train", "--max_clips", "6", "--seeds", "0", "1",
                    "--output", str(output), "--paired", "greedy", "greedy_mouth"])  # fmt: skip
    text = output.read_text()
    for row in ("| sta/greedy |", "| sta/sampled |", "| sta/greedy_mouth |", "| prior/reconstruction |"):
        assert text.count(row) == 2, row  # the mean table and the spread table
    assert text.count("| capture |") == 1
    assert "paired bootstrap over 6 clips, greedy_mouth - greedy" in text and "- LVE: " in text
    numbers = json.loads(output.with_suffix(".json").read_text())
    greedy = numbers["per_seed"]
    # greedy decoding ignores the seed; sampling does not
    assert greedy[0]["sta/greedy"]["std_ratio_eyes"] == greedy[1]["sta/greedy"]["std_ratio_eyes"]
    assert greedy[0]["sta/sampled"]["std_ratio_eyes"] != greedy[1]["sta/sampled"]["std_ratio_eyes"]
    assert 0.0 <= numbers["mean"]["sta/sampled"]["realism_accuracy"] <= 1.0
    assert 0.0 <= numbers["mean"]["sta/greedy_mouth"]["realism_accuracy_vs_prior"] <= 1.0
    # every row, the reference row included, is measured against the same capture
    reconstruction = numbers["mean"]["prior/reconstruction"]
    assert reconstruction["capture_blink_rate_per_min"] == numbers["mean"]["sta/greedy"]["capture_blink_rate_per_min"]
    assert numbers["std"]["sta/greedy"]["lve_mm"] == 0.0


def test_rl_realism_ablation_table_means_seeds_and_names_the_guard(repo_script):
    ablation = repo_script("benchmarks/rl_realism_ablation.py")
    assert ablation.guard_kept([{"train_steps": 40}]) is None  # no guard ran
    assert ablation.guard_kept([{"quality_history": [{}], "guard_accepted": 0}]) == 0.0
    assert ablation.guard_kept([{"quality_history": [{}], "guard_accepted": 0},
                                {"quality_history": [{}], "guard_accepted": 1}]) == 1.0  # fmt: skip
    row = {"std_ratio_eyes": 0.3, "capture_blink_rate_per_min": 20.0, "lve_mm": 4.0}
    base = [{name: dict(row) for name in (*ablation.BASELINES, "prior")} for _ in range(2)]
    results = [
        {"variant": "motion_rm", "seed": seed, "test": {"std_ratio_eyes": eyes, "lve_mm": 4.0},
         "rl_rounds": [{"train_steps": 40}], "reward": {"eval_gt_beats_eps_0.02": 0.5 + seed / 10},
         "retrained_reward": []}
        for seed, eyes in ((0, 0.4), (1, 0.6))
    ]  # fmt: skip
    text = ablation.table(results, base)
    assert "| RL motion_rm | 0.50 ± 0.10 |" in text and text.splitlines()[-1].startswith("| motion_rm | 0.55 ± 0.05 |")
    assert "| STA greedy | 0.30 ± 0.00 |" in text and "20.0 blinks/min" in text
    rl_row = next(line for line in text.splitlines() if line.startswith("| RL motion_rm"))
    assert rl_row.endswith("| - |")  # unguarded runs: no guard decision to report
