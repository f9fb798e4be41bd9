"""Generate the synthetic emotional talking-face corpus and save it with ``save_to_disk``.

python scripts/make_synthetic.py --preset tiny --output-dir data/synthetic-tiny --num-workers 2
python scripts/make_synthetic.py --preset tiny --plot docs/synthetic_clip.png   # also draw one clip
"""

from __future__ import annotations

import argparse
import logging

from esarm.data import SyntheticCorpusConfig, build_synthetic_corpus

PRESETS = {
    "micro": SyntheticCorpusConfig.micro,
    "tiny": SyntheticCorpusConfig.tiny,
    "small": SyntheticCorpusConfig.small,
    "mead_like": SyntheticCorpusConfig.mead_like,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--output-dir", default=None, help="default: data/synthetic-<preset>")
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--overwrite", action="store_true", help="replace a corpus of another config")
    parser.add_argument("--plot", default=None, help="also save a PNG of one clip (happy, intensity 3) here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    config = PRESETS[args.preset](num_workers=args.num_workers, seed=args.seed, fps=args.fps)
    output = build_synthetic_corpus(config, args.output_dir or f"data/synthetic-{args.preset}", args.overwrite)
    print(f"corpus: {output} ({config.num_clips} clips)")
    if args.plot:
        from esarm.data.synthetic import plot_example

        print(f"plot: {plot_example(output, args.plot)}")


if __name__ == "__main__":
    main()
