"""``esarm pipeline``: the five training stages and the evaluation, from a yaml config."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from esarm.commands import THREADS_HELP, apply_threads, find_config, say


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pipeline", help="run the five training stages and the evaluation from a config",
        description="Corpus -> motion prior -> STA -> ranked demonstrations -> reward model -> RL -> evaluation. "
        "Finished stages are skipped, interrupted ones resume from their last checkpoint.",
    )  # fmt: skip
    p.add_argument("--config", required=True, help="yaml config path or preset name (tiny, base)")
    p.add_argument("--output-dir", required=True, help="run folder")
    p.add_argument("--stages", nargs="+", help="run only these stages")
    p.add_argument("--no-resume", action="store_true", help="rerun the selected stages from scratch")
    p.add_argument(
        "--set", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
        help="config changes, e.g. sta.max_steps=500 sta.model_overrides.hidden_size=32 (values parsed as yaml)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from esarm.training.runner import run_pipeline

    logging.getLogger("esarm").setLevel(logging.INFO)
    config = find_config(args.config)
    apply_threads(args.threads)
    overrides = [*args.set, *([f"num_threads={args.threads}"] if args.threads else [])]
    results = run_pipeline(
        str(config), args.output_dir, resume=not args.no_resume, stages=args.stages, overrides=overrides
    )
    say(json.dumps({"output_dir": results.get("output_dir"), "timings_s": results.get("timings_s")}, indent=2))
    say(f"results: {Path(args.output_dir) / 'evaluation'}")
    return 0
