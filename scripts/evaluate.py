"""Evaluate saved STA models on a dataset split: paper Table I / II markdown, a JSON of all numbers and plots.

    python scripts/evaluate.py --model_paths runs/sta runs/rl --dataset_name_or_path data/synthetic --split test \
        --output_dir runs/evaluation --epsilons 0.02 0.25 0.5 0.75 1.0 --reward_model_path runs/rm

The face rig is --rig, else $ESARM_RIG, else a converted ICT-FaceKit rig in the user cache, else the rig embedded in
esarm (docs/evaluation.md).
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

# `python scripts/evaluate.py` puts scripts/ first on sys.path, where this file would shadow the `evaluate` package
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from transformers import HfArgumentParser  # noqa: E402

from esarm.evaluation.run import run_evaluation  # noqa: E402


@dataclass
class EvaluateArguments:
    model_paths: list[str] = field(metadata={"help": "Saved ESARMSTAForGeneration folders (one Table I row each)."})
    dataset_name_or_path: str = field(metadata={"help": "Corpus saved with save_to_disk (DatasetDict)."})
    split: str = field(default="test", metadata={"help": "Split to evaluate (held-out speakers)."})
    output_dir: str = field(default="evaluation", metadata={"help": "Where report.md, report.json and PNGs go."})
    rig: str | None = field(default=None, metadata={"help": "Face rig (.npz, .glb, ICT-FaceKit folder)."})
    epsilons: list[float] | None = field(
        default=None, metadata={"help": "Roll the first model out at these noise levels (Table II)."}
    )
    dataset_name: str | None = field(default=None, metadata={"help": "Dataset label in Table II."})
    train_split: str | None = field(default="train", metadata={"help": "Split that trains the expression classifier."})
    classifier_path: str | None = field(default=None, metadata={"help": "Saved ExpressionClassifier folder."})
    reward_model_path: str | None = field(default=None, metadata={"help": "Saved reward model (reward vs epsilon)."})
    batch_size: int = field(default=8, metadata={"help": "Clips generated together."})
    max_samples: int | None = field(default=None, metadata={"help": "Evaluate at most this many clips."})
    num_diversity_samples: int = field(default=0, metadata={"help": "Samples per clip for diversity (>= 2)."})
    seed: int = field(default=0, metadata={"help": "Seed of the rollouts and of the classifier."})
    device: str | None = field(default=None, metadata={"help": "torch device (default: cuda if available)."})


def main(args=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (arguments,) = HfArgumentParser(EvaluateArguments).parse_args_into_dataclasses(args=args)
    results = run_evaluation(**vars(arguments))
    print(json.dumps(results.get("models", {}), indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
