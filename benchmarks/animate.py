"""Real-time factor of ``esarm animate`` and peak memory of a long file, on CPU.

For each preset (random-init ``tiny`` and ``base`` STA models, saved to a temporary folder) this times the whole
command (``esarm animate speech.wav --model DIR --out anim.csv``: model loading, audio decoding, windowed
generation, CSV) and the generation alone, on ``--seconds`` of audio. Then it animates ``--long-minutes`` of
audio in a fresh process per case and reports the peak resident memory, next to a one-minute file, to show that
memory does not grow with the length (windows of ``--chunk-seconds``).

    python benchmarks/animate.py                       # tiny + base, 10 s clip, 10-minute file (tiny)
    python benchmarks/animate.py --presets tiny --long-minutes 0
    python benchmarks/animate.py --presets base --long-minutes 0 --levers fp32 int8+sdpa   # inference levers

``--levers`` times the generation once per lever of :func:`esarm.inference.optimize_for_inference` (``fp32``,
``sdpa``, ``int8``, ``int8+sdpa``); the command row always runs the CLI as it ships.

``--batch-sizes 1 4 16`` adds the throughput of ``pipeline("speech-to-animation")`` (CPU defaults) on
``--batch-clips`` clips of 3-7 s: clips and seconds of audio animated per second of wall time, per batch size.

    python benchmarks/animate.py --presets tiny base --long-minutes 0 --batch-sizes 1 4 16 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_model(preset: str, folder: Path) -> Path:
    import torch

    from esarm import ESARMSTAConfig, ESARMSTAForGeneration

    torch.manual_seed(0)
    # Random init: no pretrained WavLM download (the base preset's encoder has the WavLM-base-plus shape).
    config = getattr(ESARMSTAConfig, preset)(audio_encoder_name_or_path=None)
    model = ESARMSTAForGeneration(config)
    model.save_pretrained(folder)
    return folder


def speech_like(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    voice = np.sin(2 * np.pi * 140 * t) + 0.3 * rng.normal(size=t.shape)
    return (0.2 * syllables * voice).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, rate: int = 16000) -> Path:
    import soundfile

    soundfile.write(path, audio, rate)
    return path


def time_cli(model_dir: Path, wav: Path, out: Path, chunk: float) -> float:
    from esarm.cli import main

    started = time.perf_counter()
    status = main(["animate", str(wav), "--model", str(model_dir), "--emotion", "happy", "--out", str(out),
                   "--chunk-seconds", str(chunk)])  # fmt: skip
    if status != 0:
        raise RuntimeError(f"esarm animate exited with {status}")
    return time.perf_counter() - started


def time_generation(model_dir: Path, audio: np.ndarray, chunk: float, repeats: int = 2, lever: str = "fp32") -> float:
    from esarm.inference import optimize_for_inference
    from esarm.modeling_sta import ESARMSTAForGeneration
    from esarm.streaming import animate_audio

    model = ESARMSTAForGeneration.from_pretrained(str(model_dir)).eval()
    names = set(lever.split("+"))
    if not names <= {"fp32", "sdpa", "int8"}:
        raise ValueError(f"lever must combine fp32, sdpa and int8 with '+', got {lever!r}")
    optimize_for_inference(model, int8="int8" in names, attention="sdpa" if "sdpa" in names else "eager")
    # cpu_defaults=False: the lever alone decides how the model runs
    animate_audio(model, audio[:16000], emotion="happy", cpu_defaults=False)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        animate_audio(model, audio, emotion="happy", chunk_seconds=chunk, cpu_defaults=False)
        times.append(time.perf_counter() - started)
    return min(times)


LONG_CHILD = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[4]))
sys.path.insert(0, sys.argv[5])
from animate import speech_like
from esarm.modeling_sta import ESARMSTAForGeneration
from esarm.streaming import animate_audio

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024  # MB
model = ESARMSTAForGeneration.from_pretrained(sys.argv[1]).eval()
minutes = float(sys.argv[2])
audio = np.concatenate([speech_like(60.0, seed=i) for i in range(int(np.ceil(minutes)))])[: int(minutes * 60 * 16000)]
with open("/proc/self/clear_refs", "w") as handle:  # reset the peak (VmHWM) to the current RSS
    handle.write("5")
before = status("VmRSS")
started = time.perf_counter()
result = animate_audio(model, audio, emotion="happy", chunk_seconds=float(sys.argv[3]), progress=False)
seconds = time.perf_counter() - started
print(json.dumps({"frames": len(result.blendshapes), "seconds": seconds, "rss_before_mb": before,
                  "peak_mb": status("VmHWM"), "audio_mb": audio.nbytes / 2**20}))
"""


def long_file(model_dir: Path, minutes: float, chunk: float, threads: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", LONG_CHILD, str(model_dir), str(minutes), str(chunk), str(threads),
         str(Path(__file__).resolve().parent)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def pipeline_throughput(model_dir: Path, batch_sizes: list[int], clips: int) -> list[tuple[int, float, float]]:
    """(batch size, clips / s, audio seconds / s) of the pipeline on ``clips`` clips of 3-7 s (a warm-up first)."""
    from transformers import pipeline

    import esarm  # noqa: F401  (registers the task)

    animate = pipeline("speech-to-animation", model=str(model_dir))
    lengths = np.linspace(3.0, 7.0, clips)
    audios = [speech_like(float(seconds), seed=index) for index, seconds in enumerate(lengths)]
    animate(audios[:2], batch_size=2)
    rows = []
    for batch_size in batch_sizes:
        started = time.perf_counter()
        results = animate(audios, batch_size=batch_size)
        elapsed = time.perf_counter() - started
        assert len(results) == clips
        rows.append((batch_size, clips / elapsed, float(lengths.sum()) / elapsed))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "base"])
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length for the real-time factor")
    parser.add_argument("--long-minutes", type=float, default=10.0, help="long-file length (0: skip)")
    parser.add_argument("--long-presets", nargs="+", default=["tiny"])
    parser.add_argument("--chunk-seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    parser.add_argument("--levers", nargs="+", default=["fp32"], help="generation timed with each: fp32 sdpa int8 ...")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[], help="pipeline throughput per batch size")
    parser.add_argument("--batch-clips", type=int, default=32, help="clips of the throughput table")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}, "
          f"torch {torch.__version__}")  # fmt: skip
    rows, long_rows, batch_rows = [], [], []
    with tempfile.TemporaryDirectory(prefix="esarm-bench-") as tmp:
        tmp = Path(tmp)
        audio = speech_like(args.seconds)
        wav = write_wav(tmp / "speech.wav", audio)
        for preset in args.presets:
            model_dir = make_model(preset, tmp / preset)
            from esarm.modeling_sta import ESARMSTAForGeneration

            parameters = sum(p.numel() for p in ESARMSTAForGeneration.from_pretrained(str(model_dir)).parameters())
            cli_seconds = time_cli(model_dir, wav, tmp / f"{preset}.csv", args.chunk_seconds)
            for lever in args.levers:
                generation_seconds = time_generation(model_dir, audio, args.chunk_seconds, lever=lever)
                rows.append((f"{preset} ({lever})", parameters, cli_seconds, generation_seconds))
            if args.batch_sizes:
                for batch_size, clips, audio_seconds in pipeline_throughput(model_dir, args.batch_sizes, args.batch_clips):
                    batch_rows.append((preset, batch_size, clips, audio_seconds))
            if args.long_minutes > 0 and preset in args.long_presets:
                for minutes in (1.0, args.long_minutes):
                    measured = long_file(model_dir, minutes, args.chunk_seconds, args.threads)
                    long_rows.append((preset, minutes, measured))

    print(
        f"\n`esarm animate` on {args.seconds:g} s of audio (CPU, random-init weights, chunk {args.chunk_seconds:g} s)\n"
    )
    print("| preset | parameters | command wall time (s) | command RTF | generation (s) | generation RTF |")
    print("|---|---:|---:|---:|---:|---:|")
    for preset, parameters, cli_seconds, generation_seconds in rows:
        print(f"| {preset} | {parameters / 1e6:.1f} M | {cli_seconds:.2f} | {cli_seconds / args.seconds:.3f} | "
              f"{generation_seconds:.2f} | {generation_seconds / args.seconds:.3f} |")  # fmt: skip
    print("\nRTF = processing time / audio duration (< 1: faster than real time).")
    if batch_rows:
        print(f"\n`pipeline('speech-to-animation')` throughput, {args.batch_clips} clips of 3-7 s (CPU defaults)\n")
        print("| preset | batch size | clips / s | audio seconds / s |")
        print("|---|---:|---:|---:|")
        for preset, batch_size, clips, audio_seconds in batch_rows:
            print(f"| {preset} | {batch_size} | {clips:.2f} | {audio_seconds:.1f} |")
    if long_rows:
        print(f"\nLong files (windows of {args.chunk_seconds:g} s, one fresh process each)\n")
        print(
            "| preset | audio | frames | time (s) | RTF | audio array (MB) | RSS before (MB) | peak RSS while animating (MB) | growth (MB) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for preset, minutes, m in long_rows:
            print(f"| {preset} | {minutes:g} min | {m['frames']} | {m['seconds']:.1f} | {m['seconds'] / (minutes * 60):.3f} | "
                  f"{m['audio_mb']:.0f} | {m['rss_before_mb']:.0f} | {m['peak_mb']:.0f} | "
                  f"{m['peak_mb'] - m['rss_before_mb']:.0f} |")  # fmt: skip
        print("\nRSS before = model + decoded audio in memory; growth = extra memory of the windowed animation.")


if __name__ == "__main__":
    main()
