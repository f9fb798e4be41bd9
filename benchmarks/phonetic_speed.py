"""Real-time factor of STA models with and without the phonetic front end, and the front end's own cost, on 1 thread.

    python benchmarks/phonetic_speed.py runs/small/sta runs/small_phonetic/sta --seconds 10 30

The audio is the real-speech set's clips (esarm.data.real_speech) joined and cut to ``--seconds``. For each model
and length it times ``generate`` (greedy, labelled neutral, the CPU defaults the pipeline applies) and, for a model
that hears phones, PocketSphinx's decoding alone (esarm.phonetic.phone_features), best of ``--repeats``: process CPU
time (all threads; the honest measure on a shared, loaded machine) and wall time, divided by the audio's duration.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from esarm.data.real_speech import load_real_speech_set
from esarm.evaluation.lipsync_evaluation import load_model
from esarm.inference import apply_cpu_inference_defaults, cpu_name
from esarm.phonetic import phone_features


def timed(function, repeats: int, *args, **kwargs) -> tuple[float, float]:
    """Best (CPU seconds, wall seconds) of ``repeats`` calls of ``function(*args, **kwargs)``."""
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        function(*args, **kwargs)
        best_cpu, best_wall = min(best_cpu, time.process_time() - cpu), min(best_wall, time.perf_counter() - wall)
    return best_cpu, best_wall


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="STA model folders")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    joined = np.concatenate([row["audio"] for row in load_real_speech_set()])
    print(f"CPU: {cpu_name()}, {args.threads} thread(s)")
    print("| model | front end | audio s | RTF generate (CPU) | RTF generate (wall) | RTF phones alone (CPU) |")
    print("|---|---|---:|---:|---:|---:|")
    for path in args.models:
        model = apply_cpu_inference_defaults(load_model(path)[0])
        for seconds in args.seconds:
            audio = np.resize(joined, int(seconds * 16000)).astype(np.float32)
            normalised = torch.from_numpy((audio - audio.mean()) / audio.std())[None]
            with torch.no_grad():
                cpu, wall = timed(model.generate, args.repeats, normalised, emotion_ids=torch.tensor([0]))
            phones = "-"
            if model.phones is not None:
                phones = f"{timed(phone_features, args.repeats, audio)[0] / seconds:.4f}"
            print(f"| {path} | {model.config.audio_front_end} | {seconds:g} | {cpu / seconds:.4f} | "
                  f"{wall / seconds:.4f} | {phones} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
