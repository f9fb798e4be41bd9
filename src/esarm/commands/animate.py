"""``esarm animate``: speech files or folders -> animation files (CSV, JSON, glTF, MP4, GIF)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from esarm.blendshapes import EMOTIONS
from esarm.commands import THREADS_HELP, CommandError, apply_threads, say

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac", ".aif", ".aiff", ".mp4", ".webm")
OUTPUT_FORMATS = ("csv", "json", "glb", "gltf", "mp4", "gif")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "animate", help="speech file(s) or folders -> animation (.csv/.json/.glb/.mp4/.gif)",
        description="Animate speech with a trained STA model. Any common audio format (wav, flac, mp3, m4a, ...), "
        "any sample rate, mono or stereo. Audio longer than --chunk-seconds is animated window by window with "
        "cross-faded overlaps (bounded memory).",
    )  # fmt: skip
    p.add_argument("inputs", nargs="*", help="audio files and/or folders of audio files")
    p.add_argument(
        "--example", action="store_true", help="animate the example sentence shipped with esarm (sample_speech.wav)"
    )
    p.add_argument("--model", help="saved STA model folder or Hub id (user/repo) (default: esarm's default model)")
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
        "--greedy-mouth", action="store_true",
        help="the lips as the argmax, the eyes and brows sampled (they blink; greedy decoding never does): "
        "implies --sample",
    )  # fmt: skip
    p.add_argument(
        "--rig", help="face rig (.npz/.glb/ICT-FaceKit folder) for .glb/.mp4/.gif (default: $ESARM_RIG, else embedded)"
    )
    p.add_argument("--video-height", type=int, default=384, help="height of .mp4/.gif videos in pixels")
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="window length for long audio (s)")
    p.add_argument("--overlap-seconds", type=float, default=1.0, help="cross-fade between windows (s)")
    p.add_argument("--recursive", action="store_true", help="also look in sub-folders of input folders")
    p.add_argument(
        "--mouth", choices=("model", "phones", "mix"), default="model",
        help="where the mouth comes from: the model (default), the phones PocketSphinx recognises (English; the face "
        "above the mouth stays the model's) or the mean of the two (esarm.phone_mouth: on recordings of real people "
        "the default model's jaw follows the phones at r 0.59, 'phones' at 0.77, 'mix' at 0.72)",
    )  # fmt: skip
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
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
    p.set_defaults(handler=run)


def audio_files(inputs: Sequence[str], recursive: bool) -> list[Path]:
    """The audio files named by ``inputs`` (files, or folders searched for :data:`AUDIO_EXTENSIONS`)."""
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


def output_paths(files: list[Path], out: str | None, fmt: str | None) -> list[Path]:
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
    return [folder / f"{name}.{fmt}" for name in unique_names(files)]


def unique_names(files: list[Path]) -> list[str]:
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


def run(args: argparse.Namespace) -> int:
    from esarm.audio import check_duration, load_audio
    from esarm.export import save_animation
    from esarm.loading import load_model_and_processor
    from esarm.streaming import animate_audio, resolve_condition_ids
    from esarm.utils import check_writable_folder

    if args.emotion.strip().casefold() == "auto":
        args.emotion = "auto"
    resolve_condition_ids(args.emotion, args.intensity, None)  # bad labels fail before the model loads
    if not args.inputs and not args.example:
        raise CommandError("give audio files or folders to animate, or --example for the sentence shipped with esarm")
    inputs = list(args.inputs)
    if args.example:
        from esarm.default_model import SAMPLE_SPEECH

        inputs.append(str(SAMPLE_SPEECH))
    files = audio_files(inputs, args.recursive)
    outputs = output_paths(files, args.out, args.format)
    if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:
        raise CommandError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    for folder in sorted({o.parent for o in outputs}):
        check_writable_folder(folder, argument="--out")
    apply_threads(args.threads)
    if args.no_int8 and args.no_cpu_defaults:
        raise CommandError("--no-int8 adjusts the CPU defaults, which --no-cpu-defaults switches off: give one")
    model, processor = load_model_and_processor(args.model, args.device)
    if args.model is None:
        from esarm.default_model import describe_default_model

        say(f"model: {describe_default_model()} (--model to use another)")
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
            epsilon=args.epsilon or 0.0, seed=args.seed, do_sample=args.sample or args.greedy_mouth, cpu_defaults=False,
            greedy_groups=["mouth"] if args.greedy_mouth else None,
        )  # fmt: skip
        blendshapes = result.blendshapes
        if args.mouth != "model":
            from esarm.phone_mouth import with_phone_mouth

            blendshapes = with_phone_mouth(blendshapes, audio, rate, result.fps, args.mouth)
        metadata = {"source": source.name, "emotion": result.emotion, "intensity": args.intensity,
                    "model": args.model or "esarm default model", "mouth": args.mouth}  # fmt: skip
        save_animation(
            target, blendshapes, result.fps, audio=audio, sampling_rate=rate, rig=rig, metadata=metadata,
            video_height=args.video_height,
        )  # fmt: skip
        seconds = len(audio) / rate
        elapsed = time.perf_counter() - started
        line = (
            f"{target}  ({len(blendshapes)} frames at {result.fps:g} fps, {seconds:.2f} s of audio, "
            f"emotion {result.emotion}, {elapsed:.2f} s, real-time factor {elapsed / max(seconds, 1e-9):.2f})"
        )
        if len(files) > 1:
            iterator.write(line)
        else:
            say(line)
    return 0
