"""End-to-end latency and quality cost of live animation (``StreamingAnimator.low_latency``) against look-ahead.

Audio is pushed in 20 ms pieces, as a sound card delivers it. A frame's latency is the time from the start of its
audio to the moment ``push`` returns it: the wait for the audio that makes it final (the piece's end) plus the
compute time of that ``push`` call. Compute is reported as wall time and as process CPU time
(``time.process_time``, all threads): the development machine is shared and loaded, and CPU time is what the model
itself costs. Quality is measured against the offline result of the same model (one pass over each clip):
blendshape MAE, frame-to-frame jitter, and with a trained model and its test corpus also LVE (mm, embedded rig)
against the offline output and against the recorded ground truth, and lip sync: r(jawOpen, phoneme openness), the
lip-sync evaluation's measure, of the live and the offline animation.

    python benchmarks/streaming_latency.py                          # esarm's default model
    python benchmarks/streaming_latency.py --model random --threads 1   # a random-init tiny model
    python benchmarks/streaming_latency.py --model random-phonetic --corpus runs/small/corpus --threads 1 \
        --decoder 2:1e-20 0.5:1e-5   # the small phonetic STA's shape, random-init, two PocketSphinx settings
    python benchmarks/streaming_latency.py --model runs/x/sta --corpus runs/x/corpus --lookahead 0.1 0.3 1.0
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from esarm import ESARMSTAConfig, ESARMSTAForGeneration, phonetic
from esarm.blendshapes import EMOTIONS
from esarm.data.schema import decode_audio_value
from esarm.default_model import describe_default_model, load_default_model
from esarm.evaluation.lipsync import jaw_open, pearson, reference_curves
from esarm.evaluation.metrics import lve
from esarm.inference import cpu_name
from esarm.rig import FaceRig
from esarm.streaming import StreamingAnimator, animate_audio

RATE = 16000
PIECE = 320  # samples: 20 ms
PHONETIC_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "small_phonetic.yaml"


def load_clips(corpus: Path | None, count: int) -> tuple[list[tuple[np.ndarray, np.ndarray | None, str]], list]:
    """(audio, ground-truth blendshapes or ``None``, emotion) of ``count`` test clips, or synthetic speech; and the
    rows (for their phoneme timings; empty for synthetic speech)."""
    if corpus is not None and corpus.exists():
        import datasets

        split = datasets.load_from_disk(str(corpus))["test"]
        rows = [dict(r) for r in split.select(range(min(count, len(split))))]
        clips = [(decode_audio_value(r["audio"]), np.asarray(r["blendshapes"], np.float32), r["emotion"]) for r in rows]
        return clips, rows
    rng = np.random.default_rng(0)
    clips = []
    for index in range(count):
        t = np.arange(int(3.0 * RATE)) / RATE
        voice = np.sin(2 * np.pi * (120 + 10 * index) * t) + 0.3 * rng.normal(size=t.shape)
        clips.append(((0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * voice).astype(np.float32), None, "happy"))
    return clips, []


def jaw_sync(animations: list[np.ndarray], rows: list) -> str:
    """Mean r(jawOpen, phoneme openness) over the clips (the lip-sync evaluation's measure), or '–' without timings."""
    if not rows or "phonemes" not in rows[0]:
        return "–"
    scores = [pearson(jaw_open(a), reference_curves(row, len(a))[0]) for a, row in zip(animations, rows)]
    return f"{np.nanmean(scores):.3f}"


def stream(
    model, audio: np.ndarray, emotion: str, lookahead: float, context: float, phone_decode: float | None = None
) -> tuple[np.ndarray, dict]:
    animator = StreamingAnimator.low_latency(
        model, lookahead_seconds=lookahead, context_seconds=context, emotion=emotion, phone_decode_seconds=phone_decode
    )
    pieces, latencies, cpu_latencies, wall_calls, cpu_calls = [], [], [], [], []
    emitted = 0
    for begin in range(0, len(audio), PIECE):
        piece_end = min(begin + PIECE, len(audio)) / RATE
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        frames = animator.push(audio[begin : begin + PIECE])
        wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
        if len(frames):
            wall_calls.append(wall)
            cpu_calls.append(cpu)
            starts = (emitted + np.arange(len(frames))) / animator.fps
            latencies.extend(piece_end - starts + wall)
            cpu_latencies.extend(piece_end - starts + cpu)
        emitted += len(frames)
        pieces.append(frames)
    pieces.append(animator.flush())  # end of the stream: not a live frame, no latency counted
    timing = dict(latency=latencies, cpu_latency=cpu_latencies, wall_call=wall_calls, cpu_call=cpu_calls,
                  bound=animator.latency_seconds)  # fmt: skip
    return np.concatenate(pieces), timing


def row(model, clips, offline, offline_jitter, truth, lengths, rows, rig, context, lookahead, phone_decode, threads):
    """One table row (from the threads column on) of live animation against the offline result."""
    live, timing = [], dict(latency=[], cpu_latency=[], wall_call=[], cpu_call=[])
    with torch.no_grad():
        for audio, _, emotion in clips:
            frames, measured = stream(model, audio, emotion, lookahead, context, phone_decode)
            live.append(frames)
            for key in timing:
                timing[key].extend(measured[key])
    mae = statistics.mean(float(np.abs(f - o).mean()) for f, o in zip(live, offline))
    jitter = statistics.mean(float(np.abs(np.diff(f, axis=0)).mean()) for f in live)
    lve_offline = lve(live, offline, rig)
    lve_truth = "–"
    if truth[0] is not None:
        lve_truth = f"{lve([f[:n] for f, n in zip(live, lengths)], [g[:n] for g, n in zip(truth, lengths)], rig):.3f}"
    wall = 1000 * np.asarray(timing["latency"])
    cpu = 1000 * np.asarray(timing["cpu_latency"])
    return (f"{threads} | {lookahead:g} | {measured['bound']:.3f} | {np.median(wall):.0f} / "
            f"{np.percentile(wall, 95):.0f} / {wall.max():.0f} | {np.median(cpu):.0f} / {np.percentile(cpu, 95):.0f} / "
            f"{cpu.max():.0f} | "
            f"{1000 * np.median(timing['wall_call']):.0f} / {1000 * np.median(timing['cpu_call']):.0f} | "
            f"{mae:.4f} | {jitter:.4f} / {offline_jitter:.4f} | {lve_offline:.3f} | {lve_truth} | "
            f"{jaw_sync(live, rows)} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="default",
        help="trained STA model folder, 'default' (esarm's default model, the default), 'random' (random-init tiny) "
        "or 'random-phonetic' (random-init, the STA of configs/small_phonetic.yaml: the phonetic front end's cost)",
    )  # fmt: skip
    parser.add_argument("--corpus", type=Path, default=Path("runs/tiny/corpus"), help="its corpus (test split: LVE)")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--lookahead", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5, 1.0])
    parser.add_argument("--context", type=float, default=2.0, help="seconds of audio before each window")
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--decoder", nargs="+", metavar="LW:BEAM", default=[],
                        help="a phonetic model: rows for each PocketSphinx setting (lw, beam = pbeam) in turn "
                        "(default: esarm.phonetic.DECODER_SETTINGS alone)")  # fmt: skip
    parser.add_argument("--phone_decode", nargs="+", default=["none"],
                        help="a phonetic model: rows for each StreamingAnimator phone_decode_seconds ('none': each "
                        "window decodes all its audio)")  # fmt: skip
    args = parser.parse_args()

    if args.model == "default":
        model = load_default_model()[0]
        source = describe_default_model()
    elif (Path(args.model) / "model.safetensors").exists():
        model = ESARMSTAForGeneration.from_pretrained(str(args.model)).eval()
        source = f"trained {args.model}"
    elif args.model == "random-phonetic":
        import yaml

        overrides = yaml.safe_load(PHONETIC_CONFIG.read_text())["sta"]["model_overrides"]
        torch.manual_seed(0)
        model = ESARMSTAForGeneration(ESARMSTAConfig.tiny(**overrides)).eval()
        source = f"random-init STA of {PHONETIC_CONFIG.name} ({overrides['audio_front_end']})"
    else:
        torch.manual_seed(0)
        model = ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval()
        source = "random-init tiny"
        args.corpus = None
    clips, rows = load_clips(args.corpus, args.clips)
    rig = FaceRig.default()
    seconds = sum(len(a) for a, _, _ in clips) / RATE
    print(f"CPU: {cpu_name()}, torch {torch.__version__}; model: {source}; "
          f"{len(clips)} clips, {seconds:.1f} s; context {args.context:g} s; 20 ms pieces")  # fmt: skip
    decoders = [dict(zip(("lw", "beam"), map(float, d.split(":")))) for d in args.decoder] or [None]
    phone_decodes = [None if d == "none" else float(d) for d in args.phone_decode]
    print("\n| decoder (lw, beam) | phone decode (s) | threads | look-ahead (s) | bound (s) | latency p50 / p95 / max "
          "(ms, wall) | latency p50 / p95 / max (ms, CPU) | compute per push p50 (ms, wall / CPU) | MAE vs offline | jitter "
          "(live / offline) | LVE vs offline (mm) | LVE vs truth (mm) | r(jawOpen, openness) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for decoder in decoders:
        if decoder is not None:
            phonetic.DECODER_SETTINGS.update(lw=decoder["lw"], beam=decoder["beam"], pbeam=decoder["beam"])
        settings = f"{phonetic.DECODER_SETTINGS['lw']:g}, {phonetic.DECODER_SETTINGS['beam']:g}"
        with torch.no_grad():
            offline = [animate_audio(model, a, emotion=e, chunk_seconds=1000).blendshapes for a, _, e in clips]
        truth = [g for _, g, _ in clips]
        lengths = None
        if truth[0] is not None:
            lengths = [min(len(o), len(g)) for o, g in zip(offline, truth)]
            offline_lve = lve([o[:n] for o, n in zip(offline, lengths)], [g[:n] for g, n in zip(truth, lengths)], rig)
            print(f"decoder {settings}: offline LVE vs ground truth {offline_lve:.3f} mm; offline r(jawOpen, "
                  f"openness) {jaw_sync(offline, rows)}")  # fmt: skip
        offline_jitter = statistics.mean(float(np.abs(np.diff(o, axis=0)).mean()) for o in offline)
        for phone_decode in phone_decodes:
            for threads in args.threads:
                torch.set_num_threads(threads)
                with torch.no_grad():
                    stream(model, clips[0][0][:RATE], clips[0][2], 0.1, args.context, phone_decode)  # warm-up
                for lookahead in args.lookahead:
                    print(f"| {settings} | {phone_decode or 'window'} | "
                          + row(model, clips, offline, offline_jitter, truth, lengths, rows, rig, args.context,
                                lookahead, phone_decode, threads), flush=True)  # fmt: skip
    print(
        "\nLatency: from the start of a frame's audio until push() returns it (20 ms pieces); bound = "
        "StreamingAnimator.latency_seconds (look-ahead + one motion token), before compute. "
        f"Emotions: the clips' labels ({', '.join(sorted({e for _, _, e in clips} & set(EMOTIONS)))})."
    )


if __name__ == "__main__":
    main()
