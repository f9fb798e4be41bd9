"""Stage 1: train the VQ motion prior.

    python scripts/train_motion_prior.py --dataset_name_or_path data/synthetic --output_dir runs/prior [--max_steps 500 ...]
    python scripts/train_motion_prior.py configs/tiny.yaml --dataset_name_or_path data/synthetic --output_dir runs/prior
    accelerate launch scripts/train_motion_prior.py configs/tiny.yaml --dataset_name_or_path ... --output_dir ...

A pipeline config (configs/*.yaml) is read from its `motion_prior` section; flags override it.
"""

import logging

from esarm.training.args import parse_stage_args
from esarm.training.motion_prior_config import ESARMMotionPriorTrainingConfig
from esarm.training.motion_prior_trainer import train_motion_prior


def main(args=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_stage_args(ESARMMotionPriorTrainingConfig, section="motion_prior", args=args)
    return train_motion_prior(config)


if __name__ == "__main__":
    main()
