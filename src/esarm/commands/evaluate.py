"""``esarm evaluate``: LVE / EVE / emotion accuracy and lip-sync report of saved STA models on a corpus split."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from esarm.commands import THREADS_HELP, CommandError, apply_threads, say


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="LVE / EVE / emotion accuracy report of one or more models",
        description="Evaluate saved STA models on a corpus split: markdown tables (paper Tables I and II), JSON, plots.",
    )  # fmt: skip
    p.add_argument("--model", nargs="+", required=True, help="saved STA model folder(s)")
    p.add_argument("--dataset", required=True, help="corpus saved with save_to_disk (synthetic, MEAD, RAVDESS)")
    p.add_argument("--split", default="test")
    p.add_argument("--output-dir", default="evaluation")
    p.add_argument("--rig", help="face rig (default: $ESARM_RIG, else the rig embedded in esarm)")
    p.add_argument(
        "--epsilons", type=float, nargs="*", help="also roll out the first model at these epsilons (Table II)"
    )
    p.add_argument("--reward-model", help="saved reward model folder (reward vs epsilon plot)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-samples", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.add_argument(
        "--lipsync-heldout", metavar="FOLDER",
        help="measure lip sync on the fixed held-out sets in FOLDER (built there when missing; the test split needs "
        "the Debian package flite) instead of on --split; a corpus without phoneme timings (MEAD) is always measured "
        "on --split with alignment-free measures",
    )  # fmt: skip
    p.add_argument("--lipsync-splits", nargs="+", default=["validation", "test"], metavar="SPLIT",
                   help="held-out splits to measure (validation: unseen eSpeak NG voices, test: CMU Flite)")  # fmt: skip
    p.add_argument("--lipsync-num-sentences", type=int, metavar="N",
                   help="sentences per held-out voice when the sets are built (default: all 20)")  # fmt: skip
    p.add_argument("--lipsync-max-clips", type=int, metavar="N", help="measure lip sync on at most N clips per set")
    p.add_argument("--lipsync-probe-clips", type=int, default=256, metavar="N",
                   help="fit the log-mel probe baseline on at most N clips of the corpus's train split")  # fmt: skip
    p.add_argument("--lipsync-labels", nargs=2, default=["neutral", "happy"], metavar=("SCORED", "OTHER"),
                   help="emotion labels: the models are scored with the first; the lip motion of the two is compared")  # fmt: skip
    p.add_argument("--no-lipsync", action="store_true", help="skip the lip-sync measures")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from esarm.evaluation.run import run_evaluation
    from esarm.loading import check_model_folder, resolve_device

    for model in args.model:
        if not Path(model).exists():
            raise CommandError(f"--model folder not found: {model}")
        check_model_folder(model, "esarm_sta", "--model")
    if args.reward_model is not None:
        check_model_folder(args.reward_model, "esarm_reward", "--reward-model")
    if not Path(args.dataset).exists():
        raise CommandError(f"--dataset not found: {args.dataset}")
    lipsync = lipsync_settings(args)
    args.device = resolve_device(args.device)
    apply_threads(args.threads)
    results = run_evaluation(
        args.model, args.dataset, split=args.split, output_dir=args.output_dir, rig=args.rig, epsilons=args.epsilons,
        reward_model_path=args.reward_model, batch_size=args.batch_size, max_samples=args.max_samples,
        seed=args.seed, device=args.device, lipsync=lipsync,
    )  # fmt: skip
    for name, numbers in results.get("models", {}).items():
        shown = ", ".join(f"{k}={v:.3f}" for k, v in numbers.items() if isinstance(v, float))
        say(f"{name}: {shown}")
    for set_name, sources in results.get("lipsync", {}).items():
        # without phoneme timings (real captures) the mouth is compared with the audio's loudness envelope instead
        timed = any(math.isfinite(scores["r_jaw"]) for scores in sources.values())
        key, title = ("r_jaw", "r(jawOpen, phoneme openness)") if timed else ("envelope_r", "r(mouth, loudness)")
        shown = ", ".join(f"{source} {scores[key]:.3f}" for source, scores in sources.items())
        say(f"lip sync on {set_name}, {title}: {shown}")
    say(f"report: {Path(args.output_dir)}")
    return 0


def lipsync_settings(args: argparse.Namespace):
    """The ``--lipsync-*`` flags as LipSyncSettings (False with --no-lipsync); a bad value is a CommandError."""
    from esarm.data.heldout import CONFIG_FILE, VALIDATION_SENTENCES
    from esarm.evaluation.lipsync_evaluation import LipSyncSettings, check_settings
    from esarm.utils import check_writable_folder

    if args.no_lipsync:
        return False
    counts = {"--lipsync-num-sentences": args.lipsync_num_sentences, "--lipsync-max-clips": args.lipsync_max_clips,
              "--lipsync-probe-clips": args.lipsync_probe_clips}  # fmt: skip
    try:
        check_settings(args.lipsync_splits, args.lipsync_labels, counts, names=("--lipsync-splits", "--lipsync-labels"))
    except ValueError as error:
        raise CommandError(str(error)) from None
    if args.lipsync_num_sentences is not None and args.lipsync_num_sentences > len(VALIDATION_SENTENCES):
        raise CommandError(
            f"--lipsync-num-sentences must be in 1..{len(VALIDATION_SENTENCES)} (sentences per held-out voice), got "
            f"{args.lipsync_num_sentences}"
        )
    if args.lipsync_heldout is not None:
        folder = Path(args.lipsync_heldout).expanduser()
        if folder.is_file() or (folder.is_dir() and any(folder.iterdir()) and not (folder / CONFIG_FILE).is_file()):
            raise CommandError(
                f"--lipsync-heldout must be a folder of held-out sets, or a new or empty folder to build them in, "
                f"got {str(folder)!r}"
            )
        if not folder.exists():
            check_writable_folder(folder.resolve().parent, argument="--lipsync-heldout")
    return LipSyncSettings(
        args.lipsync_heldout, args.lipsync_splits, args.lipsync_num_sentences, args.lipsync_max_clips,
        args.lipsync_probe_clips, args.lipsync_labels,
    )  # fmt: skip
