"""Run the whole ESARM pipeline: corpus -> motion prior -> STA -> demonstrations -> reward model -> RL -> evaluation.

    python scripts/run_pipeline.py --config configs/tiny.yaml --output_dir runs/tiny
    python scripts/run_pipeline.py --config configs/tiny.yaml --output_dir runs/tiny --no_resume   # start over
    python scripts/run_pipeline.py --config configs/tiny.yaml --output_dir runs/tiny --stages corpus motion_prior
    python scripts/run_pipeline.py --config configs/tiny.yaml --output_dir runs/h32 --stages corpus motion_prior sta \
        evaluation --set sta.model_overrides.hidden_size=32 sta.seed=1        # an ablation of the STA model

Finished stages are skipped, an interrupted stage resumes from its last checkpoint. The results tables are written
to <output_dir>/evaluation/results.md.
"""

import argparse
import logging

from esarm.training.runner import STAGES, run_pipeline


def main(args=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="Pipeline yaml (configs/tiny.yaml, configs/base.yaml).")
    parser.add_argument("--output_dir", "--output-dir", required=True, help="Run folder.")
    parser.add_argument("--no_resume", "--no-resume", action="store_true", help="Rerun every stage from scratch.")
    parser.add_argument("--stages", nargs="+", choices=STAGES, help="Run only these stages.")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
        help="Config changes, e.g. sta.max_steps=500 sta.model_overrides.hidden_size=32 (values parsed as yaml).",
    )  # fmt: skip
    parsed = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    summary = run_pipeline(parsed.config, parsed.output_dir, resume=not parsed.no_resume, stages=parsed.stages,
                           overrides=parsed.overrides)  # fmt: skip
    results = summary["stages"].get("evaluation")
    if results is not None:
        print(open(f"{parsed.output_dir}/evaluation/results.md").read())
    return summary


if __name__ == "__main__":
    main()
