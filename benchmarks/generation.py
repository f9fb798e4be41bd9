"""Speed of ``ESARMSTAForGeneration.generate`` on CPU: real-time factor and per-frame decoding time.

For each preset (``default``: the model esarm ships, :mod:`esarm.default_model`; ``tiny`` and ``base``: random init,
``base`` with a WavLM-base-sized random encoder since no weights are downloaded)
and each audio duration, prints a markdown table with:

- RTF: wall time of ``generate`` (speech encoder + autoregressive loop + motion-prior decoding) / audio duration
  (< 1 is faster than real time);
- per-frame: time of the autoregressive token loop per animation frame (timed inside ``generate``), which the
  key/value cache keeps roughly flat as the audio gets longer (``--uncached`` shows it growing without the cache).

``--levers`` adds a table of the CPU inference levers of :func:`esarm.inference.optimize_for_inference`, combined
with ``+`` (``fp32`` first: the reference; ``sdpa``, ``int8``, ``compile``; ``encN`` = the speech encoder over
N-second windows overlapping by N / 10 s; ``window10`` = 10 s windows of ``esarm.streaming``, decoder included):
the median over ``--repeats`` runs of the process CPU time (``time.process_time``, all threads together; the
honest measure on a shared, loaded machine) and of the wall time, and the accuracy against the float model on the
same input: motion-token agreement, blendshape MAE and the cosine similarity of the speech features (mean and
minimum over frames; windows' minimum is at their seams).

Usage: ``python benchmarks/generation.py [--presets default tiny base] [--durations 5 60] [--threads 1 2] [--repeats 1]
[--cpu-defaults]`` (``--cpu-defaults``: the levers of ``esarm.inference.CPU_INFERENCE_DEFAULTS``, as the pipeline,
``esarm animate`` and the streaming animator apply them on the CPU)
       ``python benchmarks/generation.py --levers fp32 sdpa int8+sdpa sdpa+enc10 window10 --repeats 3 --threads 1 2``
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import numpy as np
import torch

import esarm.modeling_sta
from esarm import ESARMSTAConfig, ESARMSTAForGeneration
from esarm.default_model import load_default_model
from esarm.inference import (
    CPU_INFERENCE_DEFAULTS,
    apply_cpu_inference_defaults,
    cpu_name,
    lever_settings,
    optimize_for_inference,
)
from esarm.streaming import animate_audio

SAMPLING_RATE = 16000


def build(preset: str, attention_window: int | None = None) -> ESARMSTAForGeneration:
    if preset == "default":  # the model esarm ships (trained weights; attention_window does not apply)
        return load_default_model()[0]
    if preset == "tiny":
        config = ESARMSTAConfig.tiny(attention_window=attention_window)
    elif preset == "base":
        # WavLM-base architecture with random weights (no download)
        config = ESARMSTAConfig.base(audio_encoder_name_or_path=None, attention_window=attention_window)
    else:
        raise ValueError(f"preset must be 'default', 'tiny' or 'base', got {preset!r}")
    return ESARMSTAForGeneration(config).eval()


class LoopTimer:
    """Times the autoregressive loop inside ``generate`` (wraps ``decode_autoregressively`` while active)."""

    def __init__(self):
        self.seconds = 0.0
        self._original = esarm.modeling_sta.decode_autoregressively

    def __enter__(self):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self._original(*args, **kwargs)
            finally:
                self.seconds = time.perf_counter() - start

        esarm.modeling_sta.decode_autoregressively = timed
        return self

    def __exit__(self, *exc):
        esarm.modeling_sta.decode_autoregressively = self._original


def best_time(function, repeats: int) -> tuple[float, float]:
    """(best wall time, best process CPU time) over ``repeats`` calls of ``function``."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


@torch.no_grad()
def measure(model: ESARMSTAForGeneration, seconds: float, repeats: int, use_cache: bool = True) -> dict:
    audio = torch.randn(1, int(seconds * SAMPLING_RATE), generator=torch.Generator().manual_seed(0)) * 0.1
    frames = model.num_animation_frames(audio.shape[1])
    steps = model.num_motion_steps(audio.shape[1])
    model.generate(audio[:, : SAMPLING_RATE // 2], use_cache=use_cache)  # warm-up
    loops = []

    def run():
        with LoopTimer() as timer:
            model.generate(audio, use_cache=use_cache)
        loops.append(timer.seconds)

    total, cpu = best_time(run, repeats)
    decoding = min(loops)
    return {
        "seconds": seconds,
        "frames": frames,
        "steps": steps,
        "total_s": total,
        "rtf": total / seconds,
        "cpu_s": cpu,
        "loop_s": decoding,
        "per_frame_ms": 1000 * decoding / frames,
        "per_step_ms": 1000 * decoding / steps,
    }


def apply_lever(model: ESARMSTAForGeneration, lever: str) -> ESARMSTAForGeneration:
    """A copy of ``model`` with the lever's optimisations (``window10`` only changes how it is called)."""
    encoder_levers = "+".join(name for name in lever.split("+") if name != "window10") or "fp32"
    return optimize_for_inference(copy.deepcopy(model), **lever_settings(encoder_levers))


def feature_cosine(model: ESARMSTAForGeneration, reference: torch.Tensor, audio: torch.Tensor) -> tuple[float, float]:
    """(mean, minimum) cosine similarity between ``model``'s speech features of ``audio`` and ``reference``'s: for
    encoder windows the minimum falls at the seams, where a window's edge hears the least context."""
    normalised = (audio - audio.mean()) / torch.sqrt(audio.var(unbiased=False) + 1e-7)
    cosine = torch.nn.functional.cosine_similarity(model.encode_audio(normalised)[0], reference, dim=-1)
    return float(cosine.mean()), float(cosine.min())


def run_lever(model: ESARMSTAForGeneration, lever: str, audio: torch.Tensor) -> tuple[np.ndarray | None, np.ndarray]:
    """(motion tokens ``[T', G]`` or ``None`` for windowed runs, blendshapes ``[T, 52]``) of one clip."""
    if "window10" in lever:
        result = animate_audio(model, audio[0].numpy(), emotion=1, processor=None, chunk_seconds=10.0,
                               cpu_defaults=False)  # fmt: skip
        return None, result.blendshapes
    normalised = (audio - audio.mean()) / torch.sqrt(audio.var(unbiased=False) + 1e-7)  # as animate_audio does
    output = model.generate(normalised, emotion_ids=[1])
    return output.motion_tokens[0].numpy(), output.blendshapes[0].numpy()


@torch.no_grad()
def measure_levers(preset: str, levers: list[str], durations: list[float], repeats: int) -> list[dict]:
    torch.manual_seed(0)
    reference_model = build(preset)
    rows = []
    for seconds in durations:
        audio = torch.randn(1, int(seconds * SAMPLING_RATE), generator=torch.Generator().manual_seed(0)) * 0.1
        reference = None
        normalised = (audio - audio.mean()) / torch.sqrt(audio.var(unbiased=False) + 1e-7)
        reference_features = reference_model.encode_audio(normalised)[0]
        for lever in levers:
            model = apply_lever(reference_model, lever)
            run_lever(model, lever, audio[:, :SAMPLING_RATE])  # warm-up
            cpu, wall = [], []
            for _ in range(repeats):
                started_cpu, started_wall = time.process_time(), time.perf_counter()
                tokens, blendshapes = run_lever(model, lever, audio)
                cpu.append(time.process_time() - started_cpu)
                wall.append(time.perf_counter() - started_wall)
            if reference is None:
                if lever != "fp32":
                    raise ValueError(f"the first lever must be fp32 (the accuracy reference), got {lever!r}")
                reference = tokens, blendshapes
            agreement = None if tokens is None else float((tokens == reference[0]).mean())
            mae = float(np.abs(blendshapes - reference[1]).mean())
            cosine = feature_cosine(model, reference_features, audio)
            rows.append(dict(preset=preset, threads=torch.get_num_threads(), seconds=seconds, lever=lever,
                             cpu=statistics.median(cpu), wall=statistics.median(wall), agreement=agreement, mae=mae,
                             cosine=cosine))  # fmt: skip
            print(format_lever_row(rows[-1]), flush=True)
    return rows


def format_lever_row(row: dict) -> str:
    agreement = "–" if row["agreement"] is None else f"{100 * row['agreement']:.1f} %"
    return (
        f"| {row['preset']} | {row['threads']} | {row['seconds']:g} | {row['lever']} | {row['cpu']:.2f} | "
        f"{row['cpu'] / row['seconds']:.3f} | {row['wall']:.2f} | {row['wall'] / row['seconds']:.3f} | "
        f"{agreement} | {row['mae']:.4f} | {row['cosine'][0]:.4f} / {row['cosine'][1]:.4f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "base"])
    parser.add_argument("--durations", nargs="+", type=float, default=[5.0, 60.0], help="audio seconds")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch intra-op threads (each)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per measurement (best, or median for levers)")
    parser.add_argument("--levers", nargs="+", default=None, help="fp32 first, then e.g. sdpa int8+sdpa sdpa+enc10")
    parser.add_argument("--uncached", action="store_true", help="also time use_cache=False at every duration")
    parser.add_argument("--attention-window", type=int, default=None, help="sliding attention window (steps)")
    parser.add_argument("--cpu-defaults", action="store_true", help="apply esarm.inference.CPU_INFERENCE_DEFAULTS")
    args = parser.parse_args()
    if args.levers:
        print(f"CPU: {cpu_name()}, torch {torch.__version__}; medians of "
              f"{args.repeats} runs; CPU time = time.process_time (all threads), the machine is shared; load average "
              f"{' '.join(f'{load:.2f}' for load in os.getloadavg())}")  # fmt: skip
        print()
        print("| preset | threads | audio (s) | lever | CPU time (s) | CPU RTF | wall (s) | wall RTF | "
              "token agreement | blendshape MAE | feature cosine mean / min |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for threads in args.threads:
            torch.set_num_threads(threads)
            for preset in args.presets:
                measure_levers(preset, args.levers, args.durations, args.repeats)
        return
    print(
        f"CPU: {cpu_name()}, torch {torch.__version__}, threads={args.threads}, "
        f"attention_window={args.attention_window}, levers: {CPU_INFERENCE_DEFAULTS if args.cpu_defaults else None}; "
        f"load average {' '.join(f'{load:.2f}' for load in os.getloadavg())}; best of {args.repeats}"
    )
    print()
    print(
        "| preset | threads | params (M) | audio (s) | frames | steps | generate wall (s) | wall RTF | CPU (s) | CPU RTF "
        "| token loop (s) | per-frame (ms) | cache |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for preset in args.presets:
            model = build(preset, args.attention_window)
            if args.cpu_defaults:  # as the pipeline, esarm animate and StreamingAnimator apply them (WavLM only)
                apply_cpu_inference_defaults(model)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            rows = [(seconds, True) for seconds in args.durations]
            if args.uncached:
                rows += [(seconds, False) for seconds in args.durations]
            for seconds, use_cache in rows:
                result = measure(model, seconds, args.repeats, use_cache=use_cache)
                print(
                    f"| {preset} | {threads} | {params:.1f} | {seconds:g} | {result['frames']} | {result['steps']} | "
                    f"{result['total_s']:.2f} | {result['rtf']:.3f} | {result['cpu_s']:.2f} | "
                    f"{result['cpu_s'] / seconds:.3f} | {result['loop_s']:.2f} | {result['per_frame_ms']:.2f} | "
                    f"{'yes' if use_cache else 'no'} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
