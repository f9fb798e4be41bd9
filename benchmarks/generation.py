"""Speed of ``ESARMSTAForGeneration.generate`` on CPU: real-time factor and per-frame decoding time.

For each preset (random init; ``base`` uses a WavLM-base-sized random encoder since no weights are downloaded)
and each audio duration, prints a markdown table with:

- RTF: wall time of ``generate`` (speech encoder + autoregressive loop + motion-prior decoding) / audio duration
  (< 1 is faster than real time);
- per-frame: time of the autoregressive token loop per animation frame (timed inside ``generate``), which the
  key/value cache keeps roughly flat as the audio gets longer (``--uncached`` shows it growing without the cache).

Usage: ``python benchmarks/generation.py [--presets tiny base] [--durations 5 60] [--threads 1] [--repeats 1]``
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

import esarm.modeling_sta
from esarm import ESARMSTAConfig, ESARMSTAForGeneration

SAMPLING_RATE = 16000


def build(preset: str, attention_window: int | None = None) -> ESARMSTAForGeneration:
    if preset == "tiny":
        config = ESARMSTAConfig.tiny(attention_window=attention_window)
    elif preset == "base":
        # WavLM-base architecture with random weights (no download)
        config = ESARMSTAConfig.base(audio_encoder_name_or_path=None, attention_window=attention_window)
    else:
        raise ValueError(f"preset must be 'tiny' or 'base', got {preset!r}")
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


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


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

    total = best_time(run, repeats)
    decoding = min(loops)
    return {
        "seconds": seconds,
        "frames": frames,
        "steps": steps,
        "total_s": total,
        "rtf": total / seconds,
        "loop_s": decoding,
        "per_frame_ms": 1000 * decoding / frames,
        "per_step_ms": 1000 * decoding / steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "base"])
    parser.add_argument("--durations", nargs="+", type=float, default=[5.0, 60.0], help="audio seconds")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=1, help="runs per measurement (best is reported)")
    parser.add_argument("--uncached", action="store_true", help="also time use_cache=False at every duration")
    parser.add_argument("--attention-window", type=int, default=None, help="sliding attention window (steps)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(
        f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads={args.threads}, "
        f"attention_window={args.attention_window}"
    )
    print()
    print(
        "| preset | params (M) | audio (s) | frames | steps | generate (s) | RTF | token loop (s) | per-frame (ms) | cache |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        model = build(preset, args.attention_window)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        rows = [(seconds, True) for seconds in args.durations]
        if args.uncached:
            rows += [(seconds, False) for seconds in args.durations]
        for seconds, use_cache in rows:
            result = measure(model, seconds, args.repeats, use_cache=use_cache)
            print(
                f"| {preset} | {params:.1f} | {seconds:g} | {result['frames']} | {result['steps']} | "
                f"{result['total_s']:.2f} | {result['rtf']:.3f} | {result['loop_s']:.2f} | "
                f"{result['per_frame_ms']:.2f} | {'yes' if use_cache else 'no'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
