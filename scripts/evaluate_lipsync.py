"""Lip sync on the fixed held-out sets: the model beside the loudness and log-mel baselines and the ground truth.

    python scripts/evaluate_lipsync.py --heldout data/heldout --train runs/tiny/corpus --model runs/tiny/rl \
        --out runs/tiny/lipsync.md

--heldout is built there (esarm.data.heldout; the test split needs the Debian package `flite`) when it does not exist
yet. --train is a corpus saved with save_to_disk whose `train` split fits the log-mel probe. Without --model, only the
baselines and the ground-truth generator are measured. The face rig (lip aperture) is --rig, else the one resolver of esarm.rig ($ESARM_RIG, the
cached ICT-FaceKit conversion, the rig embedded in the package). --out writes markdown (.md) or JSON.
"""

import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from datasets import load_from_disk
from transformers import HfArgumentParser

from esarm.data.heldout import build_heldout_sets
from esarm.evaluation.lipsync import LogMelProbe, animate_rows, format_table, lipsync_table
from esarm.rig import resolve_rig

logger = logging.getLogger("evaluate_lipsync")

SET_NAMES = {"validation": "validation (eSpeak NG)", "test": "test (Flite)"}


@dataclass
class LipSyncArguments:
    heldout: str = field(metadata={"help": "Held-out sets folder (built there when missing)."})
    train: str | None = field(default=None, metadata={"help": "Corpus whose train split fits the log-mel probe."})
    model: str | None = field(default=None, metadata={"help": "Saved ESARMSTAForGeneration folder."})
    out: str | None = field(default=None, metadata={"help": "Write the results here (.md: table, else JSON)."})
    rig: str | None = field(default=None, metadata={"help": "Face rig (.npz, .glb, ICT-FaceKit folder)."})
    splits: list[str] = field(default_factory=lambda: ["validation", "test"], metadata={"help": "Held-out splits."})
    train_split: str = field(default="train", metadata={"help": "Split of --train that fits the probe."})
    max_train_clips: int | None = field(default=None, metadata={"help": "Fit the probe on at most this many clips."})
    emotion: str = field(default="neutral", metadata={"help": "Emotion label given to the model."})
    max_lag_frames: int = field(default=6, metadata={"help": "Search the lag within +-this many frames."})
    seed: int = field(default=0, metadata={"help": "Seed of the held-out sets and of the model's rollouts."})


def _model(path: str | None):
    if not path:
        return None, None
    from esarm.modeling_sta import ESARMSTAForGeneration
    from esarm.processing_esarm import ESARMProcessor

    model = ESARMSTAForGeneration.from_pretrained(path).eval()
    # A model folder written by the pipeline holds its processor (speaker names, fps); a bare model folder does not.
    saved = any((Path(path) / name).exists() for name in ("processor_config.json", "preprocessor_config.json"))
    processor = ESARMProcessor.from_pretrained(path) if saved else None
    return model, processor


def main(args=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    (arguments,) = HfArgumentParser(LipSyncArguments).parse_args_into_dataclasses(args=args)
    heldout = Path(arguments.heldout)
    if not (heldout / "dataset_dict.json").exists():
        build_heldout_sets(heldout, seed=arguments.seed, splits=arguments.splits)
    sets = load_from_disk(str(heldout))
    probe = None
    if arguments.train:
        train = load_from_disk(arguments.train)[arguments.train_split]
        if arguments.max_train_clips is not None:
            train = train.select(range(min(arguments.max_train_clips, len(train))))
        probe = LogMelProbe().fit(train.with_format("numpy"))
    rig = resolve_rig(arguments.rig)
    model, processor = _model(arguments.model)
    results = {}
    for split in arguments.splits:
        rows = list(sets[split].with_format("numpy"))
        predictions = None
        if model is not None:
            predictions = animate_rows(model, rows, processor, emotion=arguments.emotion, seed=arguments.seed)
        results[SET_NAMES.get(split, split)] = lipsync_table(rows, predictions, probe, rig, arguments.max_lag_frames)
    table = format_table(results)
    print(table)
    if arguments.out:
        out = Path(arguments.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        command = "python scripts/evaluate_lipsync.py " + " ".join(sys.argv[1:] if args is None else args)
        if out.suffix == ".md":
            out.write_text(f"# Lip sync on the held-out sets\n\n`{command}`\n\n{table}\n")
        else:
            # NaN (a measure that is undefined for a source) is written as null: JSON has no NaN.
            clean = {
                k: {s: {m: v if math.isfinite(v) else None for m, v in scores.items()} for s, scores in sources.items()}
                for k, sources in results.items()
            }
            out.write_text(json.dumps({"command": command, "results": clean}, indent=2))
    return results


if __name__ == "__main__":
    main()
