"""Stage 2: train the speech-to-animation (STA) model on top of a trained (frozen) motion prior.

    python scripts/train_sta.py --dataset_name_or_path data/synthetic --motion_prior_name_or_path runs/prior --output_dir runs/sta
    accelerate launch scripts/train_sta.py configs/tiny.yaml --dataset_name_or_path ... --motion_prior_name_or_path ... --output_dir ...

A pipeline config (configs/*.yaml) is read from its `sta` section; flags override it.
"""

import logging

from esarm.training.args import parse_stage_args
from esarm.training.sta_config import ESARMSTATrainingConfig
from esarm.training.sta_trainer import train_sta


def main(args=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_stage_args(ESARMSTATrainingConfig, section="sta", args=args)
    return train_sta(config)


if __name__ == "__main__":
    main()
