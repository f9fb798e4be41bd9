"""The audio column: bytes on disk and decode speed of 16-bit FLAC (the package's storage) against float32 lists.

Clips of the synthetic corpus (real eSpeak NG speech, 16 kHz) are written to parquet twice, once with the audio
as FLAC (``esarm.data.schema.encode_audio_value``), once as float32 lists (the layout before FLAC); the benchmark
prints the parquet sizes, the FLAC bytes per second of audio, and the time to decode one clip
(``decode_audio_value``) and to collate one STA batch from each layout.

    python benchmarks/data_loading.py                    # 42 clips of the micro corpus (about 20 s on 2 cores)
    python benchmarks/data_loading.py --speakers 6 --sentences 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    from datasets import List, Value

    from esarm.data import SyntheticCorpusConfig, generate_synthetic_corpus
    from esarm.data.collators import STACollator
    from esarm.data.schema import decode_audio_value, encode_audio_value

    config = SyntheticCorpusConfig.micro(num_speakers=args.speakers, num_sentences=args.sentences)
    corpus = generate_synthetic_corpus(config, progress=False)
    flac = corpus["train"]
    samples = [decode_audio_value(a) for a in flac["audio"]]
    seconds = sum(len(s) for s in samples) / 16000
    floats = flac.remove_columns("audio").add_column(
        "audio", [s.tolist() for s in samples], feature=List(Value("float32"))
    )

    with tempfile.TemporaryDirectory() as folder:
        sizes = {}
        for name, dataset in (("flac", flac), ("float32", floats)):
            path = Path(folder) / f"{name}.parquet"
            dataset.select_columns(["audio"]).to_parquet(str(path))
            sizes[name] = path.stat().st_size
            dataset.select_columns(["audio"]).save_to_disk(str(Path(folder) / name))
            sizes[f"{name} arrow"] = sum(p.stat().st_size for p in (Path(folder) / name).glob("*.arrow"))

    started = time.perf_counter()
    for s in samples:
        encode_audio_value(s)
    encode_ms = (time.perf_counter() - started) / len(samples) * 1e3
    timings = {}
    for name, dataset in (("flac", flac), ("float32", floats)):
        rows = [dataset[i] for i in range(len(dataset))]
        started = time.perf_counter()
        for row in rows:
            decode_audio_value(row["audio"])
        decode_ms = (time.perf_counter() - started) / len(rows) * 1e3
        collator = STACollator(speakers=sorted(set(dataset["speaker"])))
        batches = [rows[i : i + args.batch_size] for i in range(0, len(rows) - args.batch_size + 1, args.batch_size)]
        started = time.perf_counter()
        for batch in batches:
            collator(batch)
        timings[name] = (decode_ms, (time.perf_counter() - started) / len(batches) * 1e3)

    print(f"{len(samples)} clips, {seconds:.1f} s of audio (mean {seconds / len(samples):.2f} s per clip)\n")
    print("| audio column | parquet bytes | save_to_disk bytes | parquet bytes per s of audio | decode one clip (ms) "
          f"| STA collate of {args.batch_size} (ms) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in ("flac", "float32"):
        print(f"| {name} | {sizes[name]:,} | {sizes[name + ' arrow']:,} | {sizes[name] / seconds:,.0f} "
              f"| {timings[name][0]:.2f} | {timings[name][1]:.1f} |")  # fmt: skip
    print(f"\nfloat32 / flac size: parquet {sizes['float32'] / sizes['flac']:.2f}x, save_to_disk "
          f"{sizes['float32 arrow'] / sizes['flac arrow']:.2f}x; FLAC encode: {encode_ms:.2f} ms per clip")


if __name__ == "__main__":
    main()
