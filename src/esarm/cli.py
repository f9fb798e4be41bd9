"""The ``esarm`` command: animate speech, run the demo and the training pipeline, evaluate, build corpora, push
to the Hub. Each sub-command is a thin wrapper over a library function, imported when the sub-command runs so
that ``esarm --help`` is instant.

Bad input (a missing file, an unknown emotion, a wrong extension...) prints one line ``esarm <command>: error:
...`` on stderr and exits with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub.errors import StrictDataclassError

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac", ".aif", ".aiff", ".mp4", ".webm")
OUTPUT_FORMATS = ("csv", "json", "glb", "gltf", "mp4", "gif")


class CommandError(ValueError):
    """A user-facing error: printed without a traceback, exit status 2."""


# ---------------------------------------------------------------------------------------------------------------
# helpers


def _say(message: str = "") -> None:
    print(message, flush=True)


def _audio_files(inputs: Sequence[str], recursive: bool) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                raise CommandError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in folder {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CommandError(f"audio input not found: {path}")
    return files


def _output_paths(files: list[Path], out: str | None, fmt: str | None) -> list[Path]:
    """One output path per input: ``--out`` is a file for one input with a known suffix, else a folder."""
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise CommandError(f"--format must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
    if out is not None:
        suffix = Path(out).suffix.lower().lstrip(".")
        if suffix:
            if suffix not in OUTPUT_FORMATS:
                raise CommandError(f"--out must end in one of .{', .'.join(OUTPUT_FORMATS)}, got {out!r}")
            if len(files) > 1:
                raise CommandError(f"--out must be a folder when animating {len(files)} files, got the file {out!r}")
            return [Path(out)]
    folder = Path(out) if out is not None else Path.cwd()
    fmt = fmt or "csv"
    return [folder / f"{name}.{fmt}" for name in _unique_names(files)]


def _unique_names(files: list[Path]) -> list[str]:
    """Output names from input stems; colliding stems get their folder's name, then their suffix, then a number."""
    names = [f.stem for f in files]
    for widen in (
        lambda f: "_".join(p for p in (f.parent.name, f.stem) if p),
        lambda f: "_".join(p for p in (f.parent.name, f.stem, f.suffix.lstrip(".")) if p),
    ):
        names = [widen(f) if names.count(n) > 1 else n for f, n in zip(files, names)]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if names.count(name) == 1 else f"{name}_{seen[name]}")
    return unique


MODEL_KINDS = {
    "esarm_sta": "an STA model (train_sta / train_rl output)",
    "esarm_motion_prior": "a motion prior",
    "esarm_reward": "a reward model",
}


def check_model_folder(path: str | os.PathLike, model_type: str, argument: str) -> None:
    """For a local folder: config.json is readable and names ``model_type``, and model.safetensors is whole. A Hub
    id (no such local path) is left to ``from_pretrained``. Raises :class:`CommandError` naming ``argument``."""
    from esarm.utils import check_safetensors

    folder = Path(path).expanduser()
    if not folder.exists():
        if Path(path).is_absolute() or str(path).startswith((".", "~")) or str(path).count("/") != 1:
            raise CommandError(f"{argument} must be a saved model folder or a Hub id (user/name), got {str(path)!r}")
        return
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise CommandError(f"{argument} {folder} has no config.json: not a saved model folder")
    try:
        found = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as error:
        raise CommandError(
            f"{argument} {folder}: config.json must be a JSON object, got an unreadable file ({error})"
        ) from None
    if found != model_type:
        given = MODEL_KINDS.get(found, f"model_type {found!r}")
        raise CommandError(
            f"{argument} must be {MODEL_KINDS[model_type]} (config.json model_type {model_type!r}), got {given} in "
            f"{folder}"
        )
    weights = folder / "model.safetensors"
    if weights.is_file():
        try:
            check_safetensors(weights)
        except ValueError as error:
            raise CommandError(f"{argument}: {error}") from None


def resolve_device(device: str | None) -> str:
    """``device`` checked against this machine (``None``: cuda when available, else cpu)."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise CommandError(f"--device must be a torch device such as cpu, cuda or cuda:1, got {device!r}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise CommandError(
            f"--device {device} needs a CUDA GPU and a CUDA build of torch; this machine has none (use --device cpu)"
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise CommandError(f"--device {device} needs Apple's MPS backend, which is not available here")
    return device


def load_model_and_processor(model_name_or_path: str, device: str | None = None) -> tuple[Any, Any]:
    """An ``ESARMSTAForGeneration`` (folder or Hub id) and its processor (``None`` when the folder has none)."""
    from safetensors import SafetensorError

    from esarm.modeling_sta import ESARMSTAForGeneration

    check_model_folder(model_name_or_path, "esarm_sta", "--model")
    device = resolve_device(device)
    path = Path(model_name_or_path).expanduser()
    try:
        model = ESARMSTAForGeneration.from_pretrained(str(path) if path.exists() else model_name_or_path)
    except (OSError, SafetensorError) as error:
        raise CommandError(f"could not load the model {model_name_or_path!r}: {error}") from None
    model = model.to(device).eval()
    processor = None
    try:
        from esarm.processing_esarm import ESARMProcessor

        processor = ESARMProcessor.from_pretrained(str(path) if path.exists() else model_name_or_path)
    except Exception as error:  # noqa: BLE001 - a folder without processor files is fine
        logging.getLogger(__name__).info("no processor with the model (%s); using the defaults", error)
    return model, processor


def _apply_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        if threads < 1:
            raise CommandError(f"--threads must be a positive number of torch threads, got {threads}")
        torch.set_num_threads(threads)


def _find_config(name: str) -> Path:
    """A pipeline config: a path, or a preset name looked up in ``configs/`` (working folder, then the presets
    installed with the package as ``esarm.configs``)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    candidates = []
    for folder in (Path.cwd() / "configs", Path(str(importlib.resources.files("esarm.configs")))):
        candidates += [folder / f"{name}.yaml", folder / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CommandError(f"config not found: {name!r} (looked for {name} and configs/{name}.yaml)")


# ---------------------------------------------------------------------------------------------------------------
# animate


def cmd_animate(args: argparse.Namespace) -> int:
    from esarm.audio import check_duration, load_audio
    from esarm.export import save_animation
    from esarm.streaming import animate_audio, resolve_condition_ids
    from esarm.utils import check_writable_folder

    if args.emotion.strip().casefold() == "auto":
        args.emotion = "auto"
    resolve_condition_ids(args.emotion, args.intensity, None)  # bad labels fail before the model loads
    files = _audio_files(args.inputs, args.recursive)
    outputs = _output_paths(files, args.out, args.format)
    if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:
        raise CommandError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    for folder in sorted({o.parent for o in outputs}):
        check_writable_folder(folder, argument="--out")
    _apply_threads(args.threads)
    if args.no_int8 and args.no_cpu_defaults:
        raise CommandError("--no-int8 adjusts the CPU defaults, which --no-cpu-defaults switches off: give one")
    model, processor = load_model_and_processor(args.model, args.device)
    if not args.no_cpu_defaults:
        from esarm.inference import apply_cpu_inference_defaults

        # CPU and WavLM encoders only; the animator below then leaves the model as it is
        apply_cpu_inference_defaults(model, int8=False if args.no_int8 else "auto")

    rig = None
    if any(o.suffix.lower() in (".mp4", ".gif", ".glb", ".gltf") for o in outputs):
        from esarm.rig import resolve_rig

        rig = resolve_rig(args.rig)
    iterator = list(zip(files, outputs))
    if len(iterator) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="animating", unit="file")
    rate = int(model.config.sampling_rate)
    for source, target in iterator:
        started = time.perf_counter()
        audio = check_duration(
            load_audio(str(source), target_rate=rate), rate, float(model.config.fps), argument=f"audio in {source}"
        )
        result = animate_audio(
            model, audio, sampling_rate=rate, processor=processor, emotion=args.emotion, intensity=args.intensity,
            speaker=args.speaker, chunk_seconds=args.chunk_seconds, overlap_seconds=args.overlap_seconds,
            epsilon=args.epsilon or 0.0, seed=args.seed, do_sample=args.sample, cpu_defaults=False,
        )  # fmt: skip
        metadata = {"source": source.name, "emotion": result.emotion, "intensity": args.intensity, "model": args.model}
        save_animation(
            target, result.blendshapes, result.fps, audio=audio, sampling_rate=rate, rig=rig, metadata=metadata,
            video_height=args.video_height,
        )  # fmt: skip
        seconds = len(audio) / rate
        elapsed = time.perf_counter() - started
        line = (
            f"{target}  ({len(result.blendshapes)} frames at {result.fps:g} fps, {seconds:.2f} s of audio, "
            f"emotion {result.emotion}, {elapsed:.2f} s, real-time factor {elapsed / max(seconds, 1e-9):.2f})"
        )
        if len(files) > 1:
            iterator.write(line)
        else:
            _say(line)
    return 0


# ---------------------------------------------------------------------------------------------------------------
# demo


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


def cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np
    import soundfile

    from esarm.data.loading import load_split
    from esarm.data.schema import decode_audio_value
    from esarm.export import save_animation
    from esarm.export.render import render_video
    from esarm.streaming import animate_audio
    from esarm.training.runner import run_pipeline

    logging.getLogger("esarm").setLevel(logging.INFO)  # stage-by-stage progress of the pipeline
    output_dir = Path(args.output_dir)
    config = _find_config(args.config)
    _say(f"esarm demo: training the '{config.stem}' pipeline in {output_dir} (config {config}) ...")
    _apply_threads(args.threads)
    started = time.perf_counter()
    overrides = [f"num_threads={args.threads}"] if args.threads else []
    results = run_pipeline(str(config), output_dir, resume=not args.no_resume, overrides=overrides)
    _say(f"pipeline finished in {time.perf_counter() - started:.0f} s")

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
        _say("\nheld-out test speakers (all tables: evaluation/results.md)")
        width = max(len(label) for label, _ in headlines)
        for label, value in headlines:
            _say(f"  {label:<{width}}  {value:.3f}")
    _say(f"\nanimated clip {clip['id']} (speaker {clip['speaker']}, {clip['emotion']}, intensity {clip['intensity']})")
    width = max(len(k) for k in files)
    for label, path in files.items():
        _say(f"  {label:<{width}}  {path}")
    best = models.get("rl", models.get("sta"))
    _say(f"\nnext: esarm animate {sample} --model {best} --emotion {clip['emotion']} --out {demo_dir / 'sample.mp4'}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# thin wrappers


def cmd_pipeline(args: argparse.Namespace) -> int:
    import json

    from esarm.training.runner import run_pipeline

    logging.getLogger("esarm").setLevel(logging.INFO)
    config = _find_config(args.config)
    _apply_threads(args.threads)
    overrides = [*args.set, *([f"num_threads={args.threads}"] if args.threads else [])]
    results = run_pipeline(
        str(config), args.output_dir, resume=not args.no_resume, stages=args.stages, overrides=overrides
    )
    _say(json.dumps({"output_dir": results.get("output_dir"), "timings_s": results.get("timings_s")}, indent=2))
    _say(f"results: {Path(args.output_dir) / 'evaluation'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from esarm.evaluation.run import run_evaluation

    for model in args.model:
        if not Path(model).exists():
            raise CommandError(f"--model folder not found: {model}")
        check_model_folder(model, "esarm_sta", "--model")
    if args.reward_model is not None:
        check_model_folder(args.reward_model, "esarm_reward", "--reward-model")
    if not Path(args.dataset).exists():
        raise CommandError(f"--dataset not found: {args.dataset}")
    lipsync = _lipsync_settings(args)
    args.device = resolve_device(args.device)
    _apply_threads(args.threads)
    results = run_evaluation(
        args.model, args.dataset, split=args.split, output_dir=args.output_dir, rig=args.rig, epsilons=args.epsilons,
        reward_model_path=args.reward_model, batch_size=args.batch_size, max_samples=args.max_samples,
        seed=args.seed, device=args.device, lipsync=lipsync,
    )  # fmt: skip
    for name, numbers in results.get("models", {}).items():
        shown = ", ".join(f"{k}={v:.3f}" for k, v in numbers.items() if isinstance(v, float))
        _say(f"{name}: {shown}")
    for set_name, sources in results.get("lipsync", {}).items():
        # without phoneme timings (real captures) the mouth is compared with the audio's loudness envelope instead
        timed = any(math.isfinite(scores["r_jaw"]) for scores in sources.values())
        key, title = ("r_jaw", "r(jawOpen, phoneme openness)") if timed else ("envelope_r", "r(mouth, loudness)")
        shown = ", ".join(f"{source} {scores[key]:.3f}" for source, scores in sources.items())
        _say(f"lip sync on {set_name}, {title}: {shown}")
    _say(f"report: {Path(args.output_dir)}")
    return 0


def _lipsync_settings(args: argparse.Namespace):
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
        args.lipsync_probe_clips, args.lipsync_labels, real_speech=not args.no_lipsync_real_speech,
    )  # fmt: skip


def cmd_synth(args: argparse.Namespace) -> int:
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
    from datasets import load_from_disk

    corpus = load_from_disk(str(path))
    _say(f"{path}  ({', '.join(f'{split}: {corpus[split].num_rows} clips' for split in corpus)})")
    return 0


def _prepare(prepare, args: argparse.Namespace) -> int:
    if not Path(args.source).exists():
        raise CommandError(f"source folder not found: {args.source}")
    path = prepare(
        args.source, args.output_dir, num_workers=args.num_workers, overwrite=args.overwrite,
        max_clips=args.max_clips, model_asset_path=args.model_asset_path, seed=args.seed, extractor=args.extractor,
    )  # fmt: skip
    _say(f"{path}")
    return 0


def cmd_prepare_mead(args: argparse.Namespace) -> int:
    from esarm.data.mead import prepare_mead

    return _prepare(prepare_mead, args)


def cmd_prepare_ravdess(args: argparse.Namespace) -> int:
    from esarm.data.ravdess import prepare_ravdess

    return _prepare(prepare_ravdess, args)


def cmd_push(args: argparse.Namespace) -> int:
    from esarm.hub import prepare_upload_folder, push_to_hub

    if not Path(args.folder).is_dir():
        raise CommandError(f"model folder not found: {args.folder}")
    if args.dry_run:
        folder = prepare_upload_folder(args.folder, args.dry_run, repo_id=args.repo_id, report=args.report)
        _say(f"would upload to {args.repo_id}:")
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            _say(f"  {path.relative_to(folder)}  ({path.stat().st_size} bytes)")
        return 0
    url = push_to_hub(
        args.folder, args.repo_id, report=args.report, private=args.private, token=args.token,
        commit_message=args.commit_message,
    )  # fmt: skip
    _say(f"pushed {args.folder} to {url}")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    try:
        from esarm.app.ui import launch_app
    except ImportError as error:
        raise CommandError(f"the app needs Gradio: pip install 'esarm[app]' ({error})") from None
    if args.port is not None and not 0 < args.port < 65536:
        raise CommandError(f"--port must be in 1..65535, got {args.port}")
    _say(f"esarm app: loading {args.model} ...")
    launch_app(
        args.model, host=args.host, port=args.port, output_dir=args.output_dir, rig=args.rig, device=args.device,
        video_height=args.video_height,
    )  # fmt: skip
    return 0


# ---------------------------------------------------------------------------------------------------------------
# parser


def build_parser() -> argparse.ArgumentParser:
    from esarm.blendshapes import EMOTIONS

    parser = argparse.ArgumentParser(
        prog="esarm",
        description="Emotional speech to 52 ARKit blendshapes (ESARM): animate, train, evaluate, export, share.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress of the library (INFO)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = commands.add_parser(
        "animate", help="speech file(s) or folders -> animation (.csv/.json/.glb/.mp4/.gif)",
        description="Animate speech with a trained STA model. Any common audio format (wav, flac, mp3, m4a, ...), "
        "any sample rate, mono or stereo. Audio longer than --chunk-seconds is animated window by window with "
        "cross-faded overlaps (bounded memory).",
    )  # fmt: skip
    p.add_argument("inputs", nargs="+", help="audio files and/or folders of audio files")
    p.add_argument("--model", required=True, help="saved STA model folder or Hub id (user/repo)")
    p.add_argument("--out", help="output file (one input; format from the suffix) or folder (default: here)")
    p.add_argument("--format", choices=OUTPUT_FORMATS, help="format when --out is a folder (default csv)")
    p.add_argument(
        "--emotion",
        default="neutral",
        help=f"one of {', '.join(EMOTIONS)}, or 'auto' (the emotion the model hears; it misfires on unseen voices)",
    )
    p.add_argument("--intensity", type=int, choices=(1, 2, 3), help="emotion intensity (default: model's)")
    p.add_argument(
        "--speaker", help="speaker name known to the processor (any case) or id; others: 0 = unknown (default)"
    )
    p.add_argument("--seed", type=int, help="random seed (sampling, --epsilon)")
    p.add_argument("--epsilon", type=float, help="epsilon-greedy noise in [0, 1] (default 0: the model's animation)")
    p.add_argument("--sample", action="store_true", help="sample from the policy instead of taking the argmax")
    p.add_argument(
        "--rig", help="face rig (.npz/.glb/ICT-FaceKit folder) for .glb/.mp4/.gif (default: $ESARM_RIG, else embedded)"
    )
    p.add_argument("--video-height", type=int, default=384, help="height of .mp4/.gif videos in pixels")
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="window length for long audio (s)")
    p.add_argument("--overlap-seconds", type=float, default=1.0, help="cross-fade between windows (s)")
    p.add_argument("--recursive", action="store_true", help="also look in sub-folders of input folders")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, usually the number of cores)")
    p.add_argument(
        "--no-cpu-defaults", action="store_true",
        help="on the CPU, run the model as saved (default: fused attention, 20 s encoder windows and, for encoders "
        "at least 256 wide, int8 linear layers in the speech encoder)",
    )  # fmt: skip
    p.add_argument(
        "--no-int8", action="store_true",
        help="keep the CPU defaults but the speech encoder's linear layers in float (int8 saves the base preset 6-18 %% "
        "of its CPU time and changes a few motion tokens)",
    )  # fmt: skip
    p.set_defaults(handler=cmd_animate)

    p = commands.add_parser(
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
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, usually the number of cores)")
    p.set_defaults(handler=cmd_demo)

    p = commands.add_parser(
        "pipeline", help="run the five training stages and the evaluation from a config",
        description="Corpus -> motion prior -> STA -> ranked demonstrations -> reward model -> RL -> evaluation. "
        "Finished stages are skipped, interrupted ones resume from their last checkpoint.",
    )  # fmt: skip
    p.add_argument("--config", required=True, help="yaml config path or preset name (tiny, base)")
    p.add_argument("--output-dir", required=True, help="run folder")
    p.add_argument("--stages", nargs="+", help="run only these stages")
    p.add_argument("--no-resume", action="store_true", help="rerun the selected stages from scratch")
    p.add_argument(
        "--set", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
        help="config changes, e.g. sta.max_steps=500 sta.model_overrides.hidden_size=32 (values parsed as yaml)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, usually the number of cores)")
    p.set_defaults(handler=cmd_pipeline)

    p = commands.add_parser(
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
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, usually the number of cores)")
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
    p.add_argument("--no-lipsync-real-speech", action="store_true",
                   help="leave out the real-speech set (recordings of real people shipped in the package)")  # fmt: skip
    p.add_argument("--no-lipsync", action="store_true", help="skip the lip-sync measures")
    p.set_defaults(handler=cmd_evaluate)

    p = commands.add_parser(
        "synth", help="build the synthetic emotional-speech corpus (audio + blendshapes)",
        description="Generate the synthetic corpus (eSpeak NG speech, viseme-driven blendshapes, emotion styles) "
        "and save it with save_to_disk plus a dataset card. Idempotent.",
    )  # fmt: skip
    p.add_argument("--preset", default="tiny", help="tiny, micro, small or mead_like")
    p.add_argument("--output-dir", default="data/synthetic")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(handler=cmd_synth)

    for name, handler, dataset in (
        ("prepare-mead", cmd_prepare_mead, "MEAD"),
        ("prepare-ravdess", cmd_prepare_ravdess, "RAVDESS"),
    ):
        p = commands.add_parser(
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
        p.set_defaults(handler=handler)

    p = commands.add_parser(
        "push", help="upload a model or processor folder to the Hub with a model card",
        description="Render the model card from model_cards/ (metrics from --report) and upload the folder.",
    )  # fmt: skip
    p.add_argument("folder", help="save_pretrained folder (STA, RL policy, motion prior, reward model or processor)")
    p.add_argument("--repo-id", required=True, help="user/name on the Hub")
    p.add_argument("--report", help="evaluation report JSON for the card's metrics table")
    p.add_argument("--private", action="store_true")
    p.add_argument("--token", help="Hub token (default: the logged-in one)")
    p.add_argument("--commit-message", default="Upload with esarm")
    p.add_argument("--dry-run", metavar="DIR", help="write the folder that would be uploaded to DIR; upload nothing")
    p.set_defaults(handler=cmd_push)

    p = commands.add_parser(
        "app", help="a web page (Gradio) to animate speech and watch the 3D face play it",
        description="Serve the esarm app: speech from a file or the microphone, emotion (or auto), intensity, "
        "speaker, epsilon, seed -> the 3D face in sync with the audio, the video, the curves, CSV / GLB / JSON "
        "downloads, and two emotions side by side. Needs pip install 'esarm[app]'.",
    )  # fmt: skip
    p.add_argument("--model", required=True, help="saved STA model folder or Hub id (user/repo)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, help="port (default: Gradio's, 7860 or the next free one)")
    p.add_argument("--output-dir", help="folder of the runs' files (default: esarm-app in the temporary folder)")
    p.add_argument("--rig", help="face rig (.npz/.glb/ICT-FaceKit folder) (default: $ESARM_RIG / embedded rig)")
    p.add_argument("--video-height", type=int, default=320, help="height of each face in the video (pixels)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(handler=cmd_app)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("esarm")
    except Exception:  # noqa: BLE001
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``esarm`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:  # transformers' own warnings and weight-loading bars are noise on a command line
            from transformers.utils import logging as transformers_logging

            transformers_logging.set_verbosity_error()
            transformers_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover
            pass
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print(f"esarm {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError, KeyError, StrictDataclassError) as error:
        if args.debug:
            raise
        message = str(error) if not isinstance(error, KeyError) else f"missing field {error}"
        message = " ".join(message.split())  # a config field's error spans two lines: one line on the terminal
        if isinstance(error, ImportError):
            message = f"{message} (this part of esarm is not installed or not available)"
        print(f"esarm {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
