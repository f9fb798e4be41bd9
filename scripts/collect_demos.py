"""Stage 3: collect automatically ranked demonstrations (epsilon-greedy rollouts of a trained STA model).

    python scripts/collect_demos.py --sta_name_or_path runs/sta --dataset_name_or_path data/synthetic --output_dir runs/demos \
        [--epsilons 0.02 0.25 0.5 0.75 1.0 --num_rollouts 2]
    accelerate launch scripts/collect_demos.py configs/tiny.yaml --sta_name_or_path ... --dataset_name_or_path ... --output_dir ...

A pipeline config (configs/*.yaml) is read from its `demos` section; flags override it.
"""

import logging

from esarm.training.args import parse_stage_args
from esarm.training.demos_config import ESARMDemoTrainingConfig
from esarm.training.demos_trainer import collect_demos


def main(args=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_stage_args(ESARMDemoTrainingConfig, section="demos", args=args)
    return collect_demos(config)


if __name__ == "__main__":
    main()
