"""Stage 4: train the reward model on the ranked demonstrations of stage 3 (pairwise ranking loss, paper eq. 1).

    python scripts/train_rm.py --dataset_name_or_path runs/x/demos --sta_name_or_path runs/x/sta --output_dir runs/x/reward_model
    python scripts/train_rm.py configs/tiny.yaml --dataset_name_or_path ... --sta_name_or_path ... --output_dir ...
    accelerate launch scripts/train_rm.py configs/tiny.yaml --dataset_name_or_path ... --sta_name_or_path ... --output_dir ...

A pipeline config (configs/*.yaml) is read from its `reward` section; flags override it. Prints the held-out
pairwise accuracy (overall, by epsilon gap) and where the ground-truth animations rank.
"""

import logging

from esarm.training.args import parse_stage_args
from esarm.training.reward_config import ESARMRewardTrainingConfig
from esarm.training.reward_trainer import train_reward_model


def main(args=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_stage_args(ESARMRewardTrainingConfig, section="reward", args=args)
    return train_reward_model(config)


if __name__ == "__main__":
    main()
