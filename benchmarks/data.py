"""Throughput of the data stage: synthetic clips per second and MEAD-preparation clips per second.

Synthetic corpus: for each size (number of speakers x sentences, all 22 emotion/intensity conditions) and each
number of worker processes, the wall time of ``generate_synthetic_corpus`` (eSpeak NG synthesis, resampling,
blendshapes, Arrow conversion) and of ``build_synthetic_corpus`` (+ ``save_to_disk`` and card).

Preparation: a miniature MEAD tree of real H.264 mp4 + AAC m4a files (synthetic clips; the frames encode the
blendshapes so ``PixelBlendshapeExtractor`` stands in for MediaPipe, whose own speed is not measured here: mediapipe
and its model file are not available offline), prepared from scratch (decode video + audio, extract, cache, parquet)
with 1 and 2 workers.

    python benchmarks/data.py                          # default sizes (about 2-3 minutes on 2 cores)
    python benchmarks/data.py --sizes 3x2 6x8 --workers 1 2 4 --prepare-clips 24
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def bench_synthetic(sizes: list[str], workers: list[int]) -> list[dict]:
    from esarm.data import SyntheticCorpusConfig, build_synthetic_corpus, generate_synthetic_corpus

    results = []
    for size in sizes:
        speakers, sentences = (int(v) for v in size.split("x"))
        for num_workers in workers:
            config = SyntheticCorpusConfig.tiny(num_speakers=max(3, speakers), num_sentences=sentences,
                                                num_workers=num_workers)  # fmt: skip
            started = time.perf_counter()
            generate_synthetic_corpus(config, progress=False)
            generate_seconds = time.perf_counter() - started
            with tempfile.TemporaryDirectory() as folder:
                started = time.perf_counter()
                build_synthetic_corpus(config, Path(folder) / "corpus", progress=False)
                build_seconds = time.perf_counter() - started
            results.append(
                {
                    "size": f"{config.num_speakers}x{sentences}",
                    "clips": config.num_clips,
                    "workers": num_workers,
                    "generate_s": generate_seconds,
                    "build_s": build_seconds,
                    "clips_per_s": config.num_clips / generate_seconds,
                }  # fmt: skip
            )
            print(_row(results[-1]), flush=True)
    return results


def _row(result: dict) -> str:
    return (
        f"| {result['size']} | {result['clips']} | {result['workers']} | {result['generate_s']:.1f} | "
        f"{result['build_s']:.1f} | {result['clips_per_s']:.1f} |"
    )


def bench_preparation(num_clips: int, workers: list[int]) -> list[tuple[int, int, float]]:
    from esarm.data import SyntheticCorpusConfig, generate_synthetic_corpus, prepare_mead
    from esarm.data.prepare.testing import PixelBlendshapeExtractor, make_mead_tree

    config = SyntheticCorpusConfig.micro(num_sentences=max(1, num_clips // 21 + 1))
    rows = [r for split in generate_synthetic_corpus(config, progress=False).values() for r in split][:num_clips]
    results = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "MEAD"
        make_mead_tree(root, rows)
        for num_workers in workers:
            output = Path(folder) / f"prepared-{num_workers}"
            started = time.perf_counter()
            result = prepare_mead(root, output, extractor=PixelBlendshapeExtractor(), num_workers=num_workers,
                                  progress=False)  # fmt: skip
            seconds = time.perf_counter() - started
            started = time.perf_counter()
            prepare_mead(root, output, extractor=PixelBlendshapeExtractor(), progress=False)
            rerun = time.perf_counter() - started
            results.append((num_workers, result.num_clips, seconds))
            print(f"| {num_workers} | {result.num_clips} | {seconds:.1f} | {result.num_clips / seconds:.1f} | "
                  f"{rerun:.2f} |", flush=True)  # fmt: skip
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["3x2", "6x4", "6x8"], help="speakers x sentences")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--prepare-clips", type=int, default=24)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")
    print("Synthetic corpus (22 emotion x intensity conditions per speaker and sentence; 6x8 = the tiny preset)\n")
    print("| speakers x sentences | clips | workers | generate (s) | build + save (s) | clips/s |")
    print("|---|---|---|---|---|---|")
    bench_synthetic(args.sizes, args.workers)
    print("\nMEAD preparation of a miniature tree (mp4 + m4a; pixel extractor in place of MediaPipe)\n")
    print("| workers | clips | seconds | clips/s | rerun (s, all cached) |")
    print("|---|---|---|---|---|")
    bench_preparation(args.prepare_clips, args.workers)


if __name__ == "__main__":
    main()
