"""Prepare RAVDESS (audio-video speech clips) from its original files, with MEAD's emotion names.

    python scripts/prepare_ravdess.py --root /data/RAVDESS --output-dir data/ravdess \
        --model-asset-path face_landmarker.task --num-workers 8 [--calm neutral]

'calm' has no MEAD emotion: dropped by default (reported), or labelled neutral with --calm neutral.
Resumable: rerun the same command after an interruption; finished clips are skipped.
"""

from __future__ import annotations

import argparse
import logging

from esarm.data.prepare.preparation import add_preparation_arguments, preparation_options
from esarm.data.prepare.ravdess import prepare_ravdess


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="folder with the Actor_XX folders")
    parser.add_argument("--calm", choices=("drop", "neutral"), default="drop")
    add_preparation_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    result = prepare_ravdess(args.root, args.output_dir, calm=args.calm, **preparation_options(args))
    print(result)


if __name__ == "__main__":
    main()
