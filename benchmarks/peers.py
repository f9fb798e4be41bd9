"""CPU speed of esarm ``base`` beside the inference code of FaceFormer, EmoTalk and CodeTalker.

Each model runs its own ``predict`` code, from a checkout of its repository, with random weights (no download)
built from the published architecture, the same torch and transformers as esarm, on ``--threads`` torch threads.
Each model runs in its own worker process (the three repositories share module names such as ``wav2vec`` and
``utils``), one at a time, and times its inference with the process CPU time (``time.process_time``): the honest
figure on a shared, loaded machine. The table gives the median over ``--repeats`` runs and each peer's time as a
multiple of esarm's; the load average is printed with it.

Shims, all here and none in the peers' code, are the least that lets their code run offline on today's
transformers:

- ``from_pretrained`` of their wav2vec 2.0 classes builds the named architecture from a config with random weights
  (FaceFormer and CodeTalker: wav2vec2-base; EmoTalk: two wav2vec2-large-xlsr-53 encoders, one with its 7-class
  emotion head), and the audio is normalised as their processors do (zero mean, unit variance);
- their wav2vec 2.0 runs eager attention (their forward asks for the attention weights), and EmoTalk's
  classifier's ``init_weights()`` call runs ``post_init()`` (today's transformers needs it for weight tying);
- newer transformers return ``(hidden_states, extract_features)`` from ``feature_projection``, which FaceFormer's
  and CodeTalker's copies of ``Wav2Vec2Model.forward`` pass on as one tensor: the first element is passed on
  (EmoTalk's copy takes it already);
- FaceFormer's and CodeTalker's temporal-bias mask and periodic positional encoding are built for 600 frames
  (20 s at 30 fps); their own functions rebuild them for the longest clip;
- CodeTalker loads its stage-1 VQ autoencoder from a file: a random one is saved to a temporary file first; it
  imports ``six`` for ``six.string_types`` only, which stands in where ``six`` is not installed.

FaceFormer and CodeTalker use their VOCASET settings (30 fps, 5023 vertices), EmoTalk its 52 blendshapes at 30 fps.
A peer's longer durations are skipped once one run takes more than ``--max-seconds`` of CPU time, and
``--worker-timeout`` stops a worker after that many seconds of wall time (its unfinished clips say so).

Usage::

    python benchmarks/peers.py --faceformer-dir ../FaceFormer --emotalk-dir ../EmoTalk_release \\
        --codetalker-dir ../CodeTalker --durations 5 30 60 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from esarm import ESARMSTAConfig, ESARMSTAForGeneration
from esarm.inference import CPU_INFERENCE_DEFAULTS, optimize_for_inference

SAMPLING_RATE = 16000
FPS = 30
PEERS = ("faceformer", "emotalk", "codetalker")
VOCASET_TRAIN_SUBJECTS = (
    "FaceTalk_170728_03272_TA FaceTalk_170904_00128_TA FaceTalk_170725_00137_TA FaceTalk_170915_00223_TA "
    "FaceTalk_170811_03274_TA FaceTalk_170913_03279_TA FaceTalk_170904_03276_TA FaceTalk_170912_03278_TA"
)


def normalise(audio: np.ndarray) -> torch.Tensor:
    """``[1, S]`` zero-mean, unit-variance audio, as wav2vec 2.0 processors (``do_normalize=True``) give it."""
    return torch.from_numpy((audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)).float()[None]


def first_output_of_feature_projection(encoder: torch.nn.Module) -> None:
    """Newer transformers return ``(hidden_states, extract_features)``; the peers' forward expects the first."""
    projection = encoder.feature_projection
    original = projection.forward
    projection.forward = lambda hidden_states: original(hidden_states)[0]


def random_from_pretrained(cls, config):
    """A ``from_pretrained`` replacement that builds ``cls`` with random weights from ``config``."""

    def build(_cls, *args, **kwargs):
        return cls(config)

    return classmethod(build)


def base_config():
    """wav2vec2-base's architecture (FaceFormer's and CodeTalker's encoder), with eager attention: the peers' forward
    asks for the attention weights, which fused attention does not give (their transformers had only eager)."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(attn_implementation="eager")


def xlsr_large_config(**kwargs):
    """wav2vec2-large-xlsr-53's architecture (EmoTalk's two encoders), eager attention as in :func:`base_config`."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, feat_extract_activation="gelu",
        attn_implementation="eager", **kwargs,
    )  # fmt: skip


def build_esarm(repo: Path | None, max_frames: int):
    model = ESARMSTAForGeneration(ESARMSTAConfig.base(audio_encoder_name_or_path=None)).eval()
    optimize_for_inference(model, **CPU_INFERENCE_DEFAULTS)
    return lambda audio: model.generate(normalise(audio), emotion_ids=[1]).blendshapes


def build_faceformer(repo: Path, max_frames: int):
    sys.path.insert(0, str(repo))
    import faceformer  # FaceFormer's own modules, from the checkout
    import wav2vec

    wav2vec.Wav2Vec2Model.from_pretrained = random_from_pretrained(wav2vec.Wav2Vec2Model, base_config())
    args = SimpleNamespace(dataset="vocaset", feature_dim=64, period=30, vertice_dim=5023 * 3, device="cpu",
                           train_subjects=VOCASET_TRAIN_SUBJECTS)  # fmt: skip
    model = faceformer.Faceformer(args).eval()
    first_output_of_feature_projection(model.audio_encoder)
    model.biased_mask = faceformer.init_biased_mask(n_head=4, max_seq_len=max_frames, period=args.period)
    model.PPE = faceformer.PeriodicPositionalEncoding(args.feature_dim, period=args.period, max_seq_len=max_frames)
    model.PPE.eval()
    template, one_hot = torch.zeros(1, args.vertice_dim), torch.eye(8)[:1]
    return lambda audio: model.predict(normalise(audio), template, one_hot)


def build_emotalk(repo: Path, max_frames: int):
    sys.path.insert(0, str(repo))
    import model as emotalk_model  # EmoTalk's own modules, from the checkout
    import wav2vec
    from transformers import Wav2Vec2FeatureExtractor

    wav2vec.Wav2Vec2Model.from_pretrained = random_from_pretrained(wav2vec.Wav2Vec2Model, xlsr_large_config())
    classifier_config = xlsr_large_config(num_labels=7, final_dropout=0.1)
    classifier_config.pooling_mode = "mean"

    def build_classifier(cls, *args, **kwargs):
        # Its __init__ ends with init_weights(), which today's transformers can only run inside post_init().
        cls.init_weights = lambda self: None
        try:
            classifier = cls(classifier_config)
        finally:
            del cls.init_weights  # back to transformers' own
        classifier.post_init()
        return classifier

    wav2vec.Wav2Vec2ForSpeechClassification.from_pretrained = classmethod(build_classifier)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    emotalk_model.Wav2Vec2Processor.from_pretrained = classmethod(lambda cls, *args, **kwargs: extractor)
    emotalk_model.Wav2Vec2FeatureExtractor.from_pretrained = classmethod(lambda cls, *args, **kwargs: extractor)
    args = SimpleNamespace(feature_dim=832, bs_dim=52, period=30, device="cpu", max_seq_len=max_frames, batch_size=1)
    model = emotalk_model.EmoTalk(args).eval()
    return lambda audio: model.predict(torch.from_numpy(audio)[None], level=1, person=0)


def six_for_codetalker() -> None:
    """CodeTalker imports ``six`` (Python 2 compatibility) for ``six.string_types`` alone; where ``six`` is not
    installed, a module holding that one name stands in."""
    try:
        import six  # noqa: F401
    except ModuleNotFoundError:
        module = types.ModuleType("six")
        module.string_types = (str,)
        sys.modules["six"] = module


def build_codetalker(repo: Path, max_frames: int):
    sys.path.insert(0, str(repo))
    six_for_codetalker()
    import yaml
    from models import stage2  # CodeTalker's own modules, from the checkout
    from models.lib import wav2vec
    from models.stage1_vocaset import VQAutoEncoder
    from models.utils import PeriodicPositionalEncoding, init_biased_mask

    sections = yaml.safe_load((repo / "config" / "vocaset" / "demo.yaml").read_text())
    args = SimpleNamespace(**{key: value for section in sections.values() for key, value in section.items()})
    args.device = "cpu"
    wav2vec.Wav2Vec2Model.from_pretrained = random_from_pretrained(wav2vec.Wav2Vec2Model, base_config())
    with tempfile.TemporaryDirectory() as folder:
        args.vqvae_pretrained_path = os.path.join(folder, "stage1.pth.tar")
        torch.save({"state_dict": VQAutoEncoder(args).state_dict()}, args.vqvae_pretrained_path)
        model = stage2.CodeTalker(args).eval()
    first_output_of_feature_projection(model.audio_encoder)
    model.biased_mask = init_biased_mask(n_head=4, max_seq_len=max_frames, period=args.period)
    model.PPE = PeriodicPositionalEncoding(args.feature_dim, period=args.period, max_seq_len=max_frames).eval()
    subjects = args.train_subjects.split()
    template, one_hot = torch.zeros(1, args.vertice_dim), torch.eye(len(subjects))[:1]
    return lambda audio: model.predict(normalise(audio), template, one_hot)


BUILDERS = {"esarm": build_esarm, "faceformer": build_faceformer, "emotalk": build_emotalk,
            "codetalker": build_codetalker}  # fmt: skip


@torch.no_grad()
def worker(name: str, repo: Path | None, durations: list[float], repeats: int, max_seconds: float) -> None:
    """Build one model, time it at each duration and print one JSON line per duration."""
    torch.manual_seed(0)
    predict = BUILDERS[name](repo, int(max(durations) * FPS) + 2 * FPS)
    rng = np.random.default_rng(0)
    predict(0.1 * rng.standard_normal(SAMPLING_RATE).astype(np.float32))  # warm-up
    too_slow = None
    for seconds in durations:
        if too_slow is not None:
            print(json.dumps({"model": name, "seconds": seconds, "skipped": too_slow}), flush=True)
            continue
        audio = 0.1 * rng.standard_normal(int(seconds * SAMPLING_RATE)).astype(np.float32)
        times = []
        for _ in range(repeats):
            started = time.process_time()
            predict(audio)
            times.append(time.process_time() - started)
            if times[-1] > max_seconds:
                too_slow = f"{seconds:g} s of audio took {times[-1]:.0f} s of CPU time (> {max_seconds:g} s)"
                break
        print(json.dumps({"model": name, "seconds": seconds, "cpu": times}), flush=True)


def run_worker(name: str, repo: Path | None, args: argparse.Namespace) -> list[dict]:
    command = [sys.executable, __file__, "--worker", name, "--durations", *map(str, args.durations),
               "--repeats", str(args.repeats), "--threads", str(args.threads), "--max-seconds", str(args.max_seconds)]
    if repo is not None:
        command += ["--repo", str(repo)]
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    try:
        completed = subprocess.run(command, capture_output=True, text=True, env=environment,
                                   timeout=args.worker_timeout)  # fmt: skip
    except subprocess.TimeoutExpired as stopped:  # the rows printed before the timeout still count
        output = stopped.stdout.decode() if isinstance(stopped.stdout, bytes) else stopped.stdout or ""
        rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        done = {row["seconds"] for row in rows}
        return rows + [{"model": name, "seconds": seconds, "stopped": args.worker_timeout}
                       for seconds in args.durations if seconds not in done]  # fmt: skip
    rows = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0:
        print(f"{name} failed (exit status {completed.returncode}):\n{completed.stderr[-3000:]}", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for peer in PEERS:
        parser.add_argument(f"--{peer}-dir", type=Path, help=f"checkout of {peer}'s repository (skipped if not given)")
    parser.add_argument("--durations", nargs="+", type=float, default=[5.0, 30.0, 60.0], help="audio seconds")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--max-seconds", type=float, default=180.0, help="skip longer clips after a run this slow")
    parser.add_argument("--worker-timeout", type=float, default=None,
                        help="stop a model's worker after this many wall seconds (its unfinished clips: 'stopped')")
    parser.add_argument("--worker", choices=sorted(BUILDERS), help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        worker(args.worker, args.repo, args.durations, args.repeats, args.max_seconds)
        return

    load_before = os.getloadavg()
    results = {"esarm": run_worker("esarm", None, args)}
    for peer in PEERS:
        repo = getattr(args, f"{peer}_dir")
        if repo is None:
            print(f"{peer}: skipped (no --{peer}-dir given)", file=sys.stderr)
            continue
        if not repo.is_dir():
            raise SystemExit(f"--{peer}-dir must be a checkout of {peer}'s repository, got {repo}")
        results[peer] = run_worker(peer, repo, args)
    load_after = os.getloadavg()

    medians = {name: {row["seconds"]: row for row in rows} for name, rows in results.items()}
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"CPU-time medians of {args.repeats} (time.process_time); load average (1 min) {load_before[0]:.2f} "
          f"before, {load_after[0]:.2f} after; esarm base with {CPU_INFERENCE_DEFAULTS}")  # fmt: skip
    print()
    names = list(medians)
    print("| audio (s) | esarm base CPU s (RTF) | " + " | ".join(f"{n} CPU s (× esarm)" for n in names[1:]) + " |")
    print("|---" * (len(names) + 1) + "|")
    for seconds in args.durations:
        esarm_row = medians["esarm"].get(seconds, {})
        esarm_time = statistics.median(esarm_row["cpu"]) if esarm_row.get("cpu") else None
        cells = [f"{seconds:g}", "–" if esarm_time is None else f"{esarm_time:.2f} ({esarm_time / seconds:.3f})"]
        for name in names[1:]:
            row = medians[name].get(seconds)
            if row is None:
                cells.append("failed")
            elif "skipped" in row:
                cells.append(f"skipped: {row['skipped']}")
            elif "stopped" in row:
                cells.append(f"not finished: worker stopped after {row['stopped']:g} s of wall time")
            else:
                value = statistics.median(row["cpu"])
                runs = "" if len(row["cpu"]) == args.repeats else f", {len(row['cpu'])} run(s)"
                ratio = f"{value / esarm_time:.1f}×" if esarm_time else "–"
                cells.append(f"{value:.2f} ({ratio}{runs})")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
