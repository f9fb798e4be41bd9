"""Lip sync per held-out language beside the English held-out sets, for one or more STA models: one table.

    python benchmarks/lipsync_languages.py --corpus runs/tiny-multilingual/corpus --heldout runs/heldout \
        --num_sentences 4 runs/tiny-multilingual/sta runs/tiny-english/sta

The sets are the evaluation's own (esarm.evaluation.lipsync_evaluation, what ``esarm evaluate --lipsync-heldout``
measures): the fixed English held-out sets of --heldout, then one set per language of each --corpus_splits split
(``validation`` and ``test`` by default: the held-out languages of a multilingual corpus, esarm.data.synthetic.languages; its
neutral clips), each model beside the loudness envelope, the log-mel probe (fitted on the
corpus's train split) and the ground-truth generator. It prints the lip-sync table and the per-language comparison
(r(jawOpen, openness), its ratio to the English held-out ``validation`` r, and its margin over loudness on the same
clips). --json writes every number.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from datasets import load_from_disk

from esarm.evaluation.lipsync import format_table
from esarm.evaluation.lipsync_evaluation import (
    evaluate_lipsync,
    fit_probe,
    heldout_sets,
    language_comparison,
    language_sets,
    load_model,
)
from esarm.evaluation.report import language_markdown
from esarm.rig import resolve_rig
from esarm.utils import atomic_write_json


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="STA model folders (save_pretrained or Trainer checkpoints)")
    parser.add_argument("--corpus", required=True, help="a multilingual synthetic corpus (save_to_disk folder)")
    parser.add_argument("--corpus_splits", nargs="+", default=["validation", "test"])
    parser.add_argument("--heldout", required=True, help="English held-out sets folder (esarm.data.heldout)")
    parser.add_argument("--num_sentences", type=int, help="sentences per voice when --heldout is built")
    parser.add_argument("--max_clips", type=int, help="at most this many clips per set")
    parser.add_argument("--rig", help="face rig (default: esarm.rig.resolve_rig)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write all scores here")
    args = parser.parse_args(argv)

    corpus = load_from_disk(args.corpus)
    missing = [s for s in args.corpus_splits if s not in corpus]
    if missing:
        parser.error(f"--corpus_splits must be splits of {args.corpus} ({list(corpus)}), got {missing}")
    models = {str(path): load_model(path) for path in args.models}
    sets = heldout_sets(args.heldout, num_sentences=args.num_sentences, max_clips=args.max_clips)
    for split in args.corpus_splits:
        sets += language_sets(corpus[split], split, args.max_clips)
    probe = fit_probe(corpus["train"])
    scores = evaluate_lipsync(models, sets, probe, resolve_rig(args.rig), seed=args.seed)
    comparison = language_comparison(scores)
    print(format_table(scores))
    print()
    print(language_markdown(comparison))
    if args.json:
        atomic_write_json(Path(args.json), {"lipsync": scores, "lipsync_languages": comparison}, sort_keys=False)
    return {"lipsync": scores, "lipsync_languages": comparison}


if __name__ == "__main__":
    main()
