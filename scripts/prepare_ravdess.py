"""Prepare RAVDESS (audio-video speech clips) from its original files, with MEAD's emotion names.

    python scripts/prepare_ravdess.py --root /data/RAVDESS --output-dir data/ravdess \
        --model-asset-path face_landmarker.task --num-workers 8 [--calm neutral]

'calm' has no MEAD emotion: dropped by default (reported), or labelled neutral with --calm neutral.
Resumable: rerun the same command after an interruption; finished clips are skipped.
"""

from __future__ import annotations

import argparse
import logging

from esarm.data.ravdess import prepare_ravdess


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="folder with the Actor_XX folders")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument(
        "--model-asset-path", default=None, help="MediaPipe face_landmarker.task ($ESARM_MEDIAPIPE_TASK)"
    )
    parser.add_argument("--calm", choices=("drop", "neutral"), default="drop")
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--max-missing-fraction", type=float, default=0.2)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--push-to-hub", default=None, metavar="REPO_ID")
    parser.add_argument("--public", action="store_true", help="create the Hub repository public")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    result = prepare_ravdess(
        args.root,
        args.output_dir,
        model_asset_path=args.model_asset_path,
        calm=args.calm,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        num_workers=args.num_workers,
        max_missing_fraction=args.max_missing_fraction,
        shard_size=args.shard_size,
        push_to_hub=args.push_to_hub,
        private=not args.public,
    )
    print(result)


if __name__ == "__main__":
    main()
