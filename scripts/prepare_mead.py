"""Prepare MEAD from its original files: 52 ARKit blendshapes per frame (MediaPipe) + 16 kHz audio, parquet.

    python scripts/prepare_mead.py --root /data/MEAD --output-dir data/mead \
        --model-asset-path face_landmarker.task --num-workers 8
    python scripts/prepare_mead.py ... --split-by sentence          # MEAD's usual test clips instead of speakers
    python scripts/prepare_mead.py ... --push-to-hub user/mead-arkit

Resumable: rerun the same command after an interruption; finished clips are skipped.
"""

from __future__ import annotations

import argparse
import logging

from esarm.data.prepare.mead import prepare_mead
from esarm.data.prepare.preparation import add_preparation_arguments, preparation_options


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="folder with the extracted speaker folders (M003, W009, ...)")
    parser.add_argument("--view", default="front")
    parser.add_argument("--split-by", choices=("speaker", "sentence"), default="speaker")
    parser.add_argument("--sentences", default=None, help='JSON file {"<emotion>/<nnn>": "sentence text"}')
    add_preparation_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    result = prepare_mead(
        args.root,
        args.output_dir,
        view=args.view,
        split_by=args.split_by,
        sentences=args.sentences,
        **preparation_options(args),
    )
    print(result)


if __name__ == "__main__":
    main()
