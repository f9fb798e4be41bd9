"""``esarm prepare-mead`` and ``esarm prepare-ravdess``: a local MEAD / RAVDESS download -> the esarm dataset
schema (audio + 52 blendshapes extracted from the videos), resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from esarm.commands import CommandError, say

DATASETS = {"prepare-mead": "MEAD", "prepare-ravdess": "RAVDESS"}


def register(subparsers) -> None:
    for name, dataset in DATASETS.items():
        p = subparsers.add_parser(
            name, help=f"convert a local {dataset} download to the esarm dataset schema",
            description=f"Extract 52 ARKit blendshapes from the {dataset} videos and save audio + blendshapes with "
            "save_to_disk (resumable).",
        )  # fmt: skip
        p.add_argument("source", help=f"folder of the {dataset} download")
        p.add_argument("--output-dir", default=f"data/{dataset.lower()}")
        p.add_argument("--num-workers", type=int, default=1)
        p.add_argument("--max-clips", type=int, help="stop after this many clips (a quick look)")
        p.add_argument("--model-asset-path", help="MediaPipe face_landmarker.task file (blendshape extraction)")
        p.add_argument("--extractor", help="blendshape extractor 'package.module:ClassName' (default: MediaPipe)")
        p.add_argument("--seed", type=int, default=0, help="seed of the train / validation / test split")
        p.add_argument("--overwrite", action="store_true")
        p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not Path(args.source).exists():
        raise CommandError(f"source folder not found: {args.source}")
    if args.command == "prepare-mead":
        from esarm.data.mead import prepare_mead as prepare
    else:
        from esarm.data.ravdess import prepare_ravdess as prepare
    path = prepare(
        args.source, args.output_dir, num_workers=args.num_workers, overwrite=args.overwrite,
        max_clips=args.max_clips, model_asset_path=args.model_asset_path, seed=args.seed, extractor=args.extractor,
    )  # fmt: skip
    say(f"{path}")
    return 0
