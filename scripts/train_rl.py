"""Stage 5: RL fine-tuning of the STA policy against the frozen reward model (RLOO + clipped ratio + KL penalty).

    python scripts/train_rl.py --sta_name_or_path runs/x/sta --reward_model_name_or_path runs/x/reward_model \
        --dataset_name_or_path runs/x/corpus --output_dir runs/x/rl [--max_steps 50 --num_rollouts 4 ...]
    python scripts/train_rl.py configs/tiny.yaml --sta_name_or_path ... --output_dir ...
    accelerate launch scripts/train_rl.py configs/tiny.yaml --sta_name_or_path ... --output_dir ...

A pipeline config (configs/*.yaml) is read from its `rl` section; flags override it. Reports the held-out reward
and LVE / EVE of the greedy policy before and after training.
"""

import logging

from esarm.training.args import parse_stage_args
from esarm.training.rl_config import ESARMRLTrainingConfig
from esarm.training.rl_trainer import train_rl


def main(args=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_stage_args(ESARMRLTrainingConfig, section="rl", args=args)
    return train_rl(config)


if __name__ == "__main__":
    main()
