"""``esarm demo``: the quick start. Trains the tiny pipeline on the synthetic corpus, animates a held-out clip
with the STA and RL models and writes the report, the CSVs and a side-by-side video with audio."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from esarm.commands import THREADS_HELP, CommandError, apply_threads, find_config, say


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="synthetic corpus -> tiny pipeline -> animate a held-out clip -> report + video",
        description="The quick start: builds the synthetic corpus, trains the tiny pipeline (all five stages, "
        "CPU, minutes), animates a held-out clip with the STA and RL models and writes the evaluation report, "
        "CSVs and a side-by-side video with audio. Re-running resumes finished stages.",
    )  # fmt: skip
    p.add_argument("--output-dir", default="esarm-demo", help="run folder (default: esarm-demo)")
    p.add_argument("--config", default="tiny", help="pipeline config path or preset name (default: tiny)")
    p.add_argument("--clip", type=int, default=0, help="index of the held-out test clip to animate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rig", help="face rig for the video (default: $ESARM_RIG, else the rig embedded in esarm)")
    p.add_argument("--no-resume", action="store_true", help="rerun every stage from scratch")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.add_argument(
        "--verbose", action="store_true", dest="demo_verbose",
        help="also log what each stage does (the library's INFO messages, the evaluation tables, the data bars)",
    )  # fmt: skip
    p.set_defaults(handler=run)


def quiet_stage_log() -> None:
    """What a first run prints: the runner's stage lines (``[3/7] sta: finished in ...``) as plain lines, the
    stages' progress bars and every warning; not the library's INFO messages (each stage's settings, the RL checks'
    metric dicts, the evaluation's tables, which stay in ``<output-dir>/evaluation``) nor the bars of ``datasets``
    (saving and mapping the corpus)."""
    import datasets

    runner = logging.getLogger("esarm.training.runner")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    runner.addHandler(handler)
    runner.setLevel(logging.INFO)
    runner.propagate = False
    logging.getLogger("esarm").setLevel(logging.WARNING)
    datasets.disable_progress_bars()


DEMO_HEADLINES = (
    ("sta_lve", "STA lip vertex error (mm)"),
    ("rl_lve", "RL lip vertex error (mm)"),
    ("condition_baseline_lve", "audio-free baseline LVE (mm)"),
    ("sta_eve", "STA emotion vertex error (mm)"),
    ("rl_eve", "RL emotion vertex error (mm)"),
    ("sta_emotion_accuracy", "STA emotion accuracy"),
)


def _demo_clip(split, start: int) -> dict[str, Any]:
    """The first held-out clip from index ``start`` on that shows an emotion (strongest intensity first), so the
    video shows more than lip sync; the clip at ``start`` when the split is all neutral."""
    rows = [(i % len(split)) for i in range(start, start + len(split))]
    emotional = [i for i in rows if split[i]["emotion"] != "neutral"]
    if not emotional:
        return split[start % len(split)]
    strongest = max(int(split[i]["intensity"]) for i in emotional)
    return split[next(i for i in emotional if int(split[i]["intensity"]) == strongest)]


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import soundfile

    from esarm.data.loading import load_split
    from esarm.data.schema import decode_audio_value
    from esarm.export import save_animation
    from esarm.export.render import render_video
    from esarm.loading import load_model_and_processor
    from esarm.streaming import animate_audio
    from esarm.training.runner import run_pipeline

    if args.verbose or args.demo_verbose:
        logging.getLogger("esarm").setLevel(logging.INFO)  # everything the stages log
    else:
        quiet_stage_log()
    output_dir = Path(args.output_dir)
    config = find_config(args.config)
    say(f"esarm demo: training the '{config.stem}' pipeline in {output_dir} (config {config}) ...")
    apply_threads(args.threads)
    started = time.perf_counter()
    overrides = [f"num_threads={args.threads}"] if args.threads else []
    results = run_pipeline(str(config), output_dir, resume=not args.no_resume, overrides=overrides)
    say(f"pipeline finished in {time.perf_counter() - started:.0f} s")

    corpus_path = results.get("stages", {}).get("corpus", {}).get("dataset_name_or_path", str(output_dir / "corpus"))
    clip = _demo_clip(load_split(corpus_path, "test"), int(args.clip))
    audio = decode_audio_value(clip["audio"])
    rate = int(clip.get("sampling_rate", 16000))
    truth = np.asarray(clip["blendshapes"], np.float32)
    models = {name: output_dir / name for name in ("sta", "rl") if (output_dir / name / "config.json").exists()}
    if not models:
        raise CommandError(f"the pipeline left no model folder (sta/ or rl/ with config.json) in {output_dir}")
    demo_dir = output_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    sample = demo_dir / "sample.wav"
    soundfile.write(sample, audio, rate)
    animations, labels = [truth], ["ground truth"]
    files: dict[str, Path] = {"sample speech (try esarm animate on it)": sample}
    for name, folder in models.items():
        model, processor = load_model_and_processor(str(folder))
        result = animate_audio(
            model, audio, sampling_rate=rate, processor=processor, emotion=clip["emotion"],
            intensity=int(clip["intensity"]), seed=args.seed,
        )  # fmt: skip
        frames = min(len(result.blendshapes), len(truth))
        animations.append(result.blendshapes[:frames])
        labels.append(name.upper())
        files[f"{name.upper()} animation (Live Link Face CSV)"] = save_animation(
            demo_dir / f"{clip['id']}_{name}.csv", result.blendshapes, result.fps
        )
    fps = float(clip.get("fps", 30.0))
    files["side-by-side video (ground truth | STA | RL, with audio)"] = render_video(
        demo_dir / f"{clip['id']}.mp4", animations, fps, audio=audio, sampling_rate=rate, labels=labels, curves=True,
        rig=args.rig,
    )  # fmt: skip
    evaluation = output_dir / "evaluation"
    for report in sorted(evaluation.glob("*.md")) + sorted(evaluation.glob("*.json")):
        files[f"evaluation {report.suffix[1:]} ({report.stem})"] = report
    for name, folder in models.items():
        files[f"{name.upper()} model folder (from_pretrained)"] = folder

    numbers = results.get("stages", {}).get("evaluation", {})
    headlines = [(label, numbers[key]) for key, label in DEMO_HEADLINES if isinstance(numbers.get(key), float)]
    if headlines:
        say("\nheld-out test speakers (all tables: evaluation/results.md)")
        width = max(len(label) for label, _ in headlines)
        for label, value in headlines:
            say(f"  {label:<{width}}  {value:.3f}")
    say(f"\nanimated clip {clip['id']} (speaker {clip['speaker']}, {clip['emotion']}, intensity {clip['intensity']})")
    width = max(len(k) for k in files)
    for label, path in files.items():
        say(f"  {label:<{width}}  {path}")
    best = models.get("rl", models.get("sta"))
    say(f"\nnext: esarm animate {sample} --model {best} --emotion {clip['emotion']} --out {demo_dir / 'sample.mp4'}")
    return 0
