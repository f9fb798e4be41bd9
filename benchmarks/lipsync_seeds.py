"""Lip sync of pipeline runs grouped by variant: mean ± standard deviation over each group's runs (seeds).

    python benchmarks/lipsync_seeds.py \
        phones=runs/small_multilingual_phonetic,runs/smm_phonetic_s1,runs/smm_phonetic_s2 \
        log-mel=runs/small_multilingual_logmel,runs/smm_logmel_s1,runs/smm_logmel_s2

Reads each run's ``evaluation/results.json`` (the pipeline's evaluation, ``lipsync`` section) and prints, per
held-out set, the STA model's r of jawOpen and of the lip aperture, p / b / m closure of the jaw and the aperture,
and rest in pauses (esarm.evaluation.lipsync.set_scores), one row per group.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

MEASURES = ("r_jaw", "r_aperture", "closure_jaw", "closure_aperture", "rest_jaw")
DEFAULT_SETS = ("validation", "test", "real speech")


def parse_group(text: str) -> tuple[str, list[Path]]:
    """``NAME=DIR,DIR,...`` -> (name, run folders)."""
    name, sep, folders = text.partition("=")
    if not sep or not name or not folders:
        raise argparse.ArgumentTypeError(f"a group must be NAME=RUN_DIR[,RUN_DIR...], got {text!r}")
    return name, [Path(folder) for folder in folders.split(",")]


def load_lipsync(run_dir: Path, source: str = "sta") -> dict[str, dict[str, float]]:
    """``{set: {measure: value}}`` of ``source`` in a run's evaluation."""
    path = run_dir / "evaluation" / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"run {str(run_dir)!r} has no evaluation (expected {str(path)!r})")
    lipsync = json.loads(path.read_text()).get("lipsync") or {}
    return {name: table[source] for name, table in lipsync.items() if source in table}


def summarise(groups: list[tuple[str, list[Path]]], sets: tuple[str, ...] = DEFAULT_SETS) -> dict:
    """``{set: {group: {measure: (mean, std, n)}}}``; NaN where a measure is missing from every run."""
    summary: dict = {}
    for name, runs in groups:
        scores = [load_lipsync(run) for run in runs]
        for set_name in sets:
            row = {}
            for measure in MEASURES:
                values = [
                    s[set_name][measure] for s in scores if set_name in s and s[set_name].get(measure) is not None
                ]
                values = [float(v) for v in values if math.isfinite(float(v))]
                std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
                row[measure] = (float(np.mean(values)) if values else math.nan, std, len(values))
            summary.setdefault(set_name, {})[name] = row
    return summary


def format_summary(summary: dict) -> str:
    header = "| set | variant | runs | " + " | ".join(MEASURES) + " |"
    lines = [header, "|" + "---|" * (3 + len(MEASURES))]
    for set_name, rows in summary.items():
        for name, row in rows.items():
            cells = []
            for measure in MEASURES:
                mean, std, _ = row[measure]
                cells.append("–" if math.isnan(mean) else f"{mean:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}"))
            runs = max(n for _, _, n in row.values())
            lines.append(f"| {set_name} | {name} | {runs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("groups", nargs="+", type=parse_group, help="NAME=RUN_DIR[,RUN_DIR...]")
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), help="held-out sets to show")
    args = parser.parse_args(argv)
    print("mean ± standard deviation over the runs of each group (the STA model, labelled neutral)")
    print(format_summary(summarise(args.groups, tuple(args.sets))))


if __name__ == "__main__":
    main()
