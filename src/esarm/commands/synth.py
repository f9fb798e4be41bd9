"""``esarm synth``: build the synthetic emotional-speech corpus (audio + blendshapes) with a dataset card."""

from __future__ import annotations

import argparse
from pathlib import Path

from esarm.commands import CommandError, say


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="build the synthetic emotional-speech corpus (audio + blendshapes)",
        description="Generate the synthetic corpus (eSpeak NG speech, viseme-driven blendshapes, emotion styles) "
        "and save it with save_to_disk plus a dataset card. Idempotent.",
    )  # fmt: skip
    p.add_argument("--preset", default="tiny", help="tiny, micro, small or mead_like")
    p.add_argument("--output-dir", default="data/synthetic")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from datasets import load_from_disk

    from esarm.data.synthetic import CORPUS_PRESETS, SyntheticCorpusConfig, build_synthetic_corpus
    from esarm.utils import check_writable_folder

    if args.preset not in CORPUS_PRESETS:
        raise CommandError(f"--preset must be one of {', '.join(CORPUS_PRESETS)}, got {args.preset!r}")
    preset = getattr(SyntheticCorpusConfig, args.preset)
    # the corpus is written beside --output-dir and renamed into place: check before building it
    check_writable_folder(Path(args.output_dir).expanduser().resolve().parent, argument="--output-dir")
    overrides = {"seed": args.seed}
    if args.num_workers is not None:
        overrides["num_workers"] = args.num_workers
    path = build_synthetic_corpus(preset(**overrides), args.output_dir, overwrite=args.overwrite)
    corpus = load_from_disk(str(path))
    say(f"{path}  ({', '.join(f'{split}: {corpus[split].num_rows} clips' for split in corpus)})")
    return 0
