"""Training step time of the three trained models: motion prior, STA model, reward model.

For each preset and model, times full optimisation steps (forward, loss, backward, AdamW step) on random inputs of
the shapes the pipeline configs use, after warm-up steps, and prints a markdown table: milliseconds per step and
training examples per second.

- ``tiny``: the models and batch sizes of ``configs/tiny.yaml``, read from the file (motion prior width 64, STA
  width 64 with its conv front end trained and band energies, tiny reward model).
- ``base``: paper scale (``configs/base.yaml``, read likewise): WavLM-base-plus-shaped encoders with random weights (nothing is
  downloaded), its batch sizes.

Inputs: ``--seconds`` of audio per clip (default 3 s, about the synthetic corpus's clips; MEAD's are 3-5 s) and
motion windows of the config's ``max_frames`` for the motion prior. The STA step includes the token targets from the
frozen prior and the emotion loss, not the cross-reconstruction pass on partner clips that ``train_sta`` adds (a
second speech-encoder pass) nor data loading: in the tiny pipeline a full STA step took 0.43 s (800 steps, 342 s).

Usage::

    python benchmarks/training.py [--presets tiny base] [--steps 5] [--warmup 2] [--threads 1]
    python benchmarks/training.py --device cuda --bf16 --presets base --steps 50    # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import platform
import time

import torch

from esarm import (
    ESARMMotionPrior,
    ESARMMotionPriorConfig,
    ESARMRewardModel,
    ESARMRewardModelConfig,
    ESARMSTAConfig,
    ESARMSTAForGeneration,
)
from esarm.modeling_reward import ranking_loss
from esarm.training.args import build_model_config, load_config_file, parse_overrides

SAMPLING_RATE = 16000

PRESETS = ("tiny", "base")


def stage_setup(preset: str, stage: str, config_class: type, **overrides) -> tuple:
    """Model config and per-device batch size of a stage as ``configs/<preset>.yaml`` sets them (the same preset
    and ``model_overrides`` that the pipeline builds the model from; ``overrides`` are added)."""
    section = load_config_file(importlib.resources.files("esarm.configs") / f"{preset}.yaml")[stage]
    overrides = {**parse_overrides(section.get("model_overrides")), **overrides}
    config = build_model_config(config_class, section.get("model_config"), overrides)
    return config, int(section["per_device_train_batch_size"]), section


def time_steps(step, steps: int, warmup: int, device: torch.device) -> float:
    """Mean seconds per call of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def make_step(model, loss_fn, autocast):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        with autocast():
            loss = loss_fn()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def bench_preset(preset: str, args, device: torch.device) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    samples = int(args.seconds * SAMPLING_RATE)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.bf16 else contextlib.nullcontext
    rows = []

    def audio(batch):
        return torch.randn(batch, samples, generator=generator).to(device)

    # motion prior
    config, batch, section = stage_setup(preset, "motion_prior", ESARMMotionPriorConfig)
    frames = int(section.get("max_frames") or 64)
    prior = ESARMMotionPrior(config).to(device).train()
    blendshapes = torch.rand(batch, frames, 52, generator=generator).to(device)
    seconds = time_steps(make_step(prior, lambda: prior(blendshapes).loss, autocast), args.steps, args.warmup, device)
    rows.append({"model": "motion prior", "batch": f"{batch} × {frames} frames", "params": prior, "s": seconds,
                 "examples": batch})  # fmt: skip

    # STA (prior frozen)
    # random weights, nothing downloaded (audio_encoder_name_or_path=None keeps the encoder's architecture)
    config, batch, _ = stage_setup(preset, "sta", ESARMSTAConfig, audio_encoder_name_or_path=None,
                                   motion_prior_config=prior.config.to_dict())  # fmt: skip
    sta = ESARMSTAForGeneration(config).to(device).train()
    sta.motion_prior.load_state_dict(prior.state_dict())
    input_values = audio(batch)
    steps = int(sta.num_motion_steps(samples))
    frames = steps * sta.motion_prior.frames_per_token
    targets = torch.rand(batch, frames, 52, generator=generator).to(device)
    emotions = torch.randint(0, 8, (batch,), generator=generator).to(device)

    def sta_loss():
        tokens = sta.motion_prior.encode(targets)
        return sta(input_values=input_values, emotion_ids=emotions, motion_tokens=tokens).loss

    seconds = time_steps(make_step(sta, sta_loss, autocast), args.steps, args.warmup, device)
    rows.append({"model": "STA", "batch": f"{batch} × {args.seconds:g} s", "params": sta, "s": seconds,
                 "examples": batch})  # fmt: skip

    # reward model: a batch of pairs, both trajectories scored in one forward pass
    config, batch, _ = stage_setup(preset, "reward", ESARMRewardModelConfig, audio_encoder_name_or_path=None)
    reward = ESARMRewardModel(config).to(device).train()
    pair_audio = audio(batch).repeat(2, 1)
    tokens = torch.randint(0, reward.config.codebook_size, (2 * batch, steps, reward.config.num_groups),
                           generator=generator).to(device)  # fmt: skip
    labels = torch.ones(batch, device=device)
    conditions = {name: torch.zeros(2 * batch, dtype=torch.long, device=device)
                  for name in ("emotion_ids", "intensity_ids", "speaker_ids")}  # fmt: skip

    def reward_loss():
        returns = reward(input_values=pair_audio, motion_tokens=tokens, **conditions).returns
        return ranking_loss(returns[:batch], returns[batch:], labels)

    seconds = time_steps(make_step(reward, reward_loss, autocast), args.steps, args.warmup, device)
    rows.append({"model": "reward model", "batch": f"{batch} pairs × {args.seconds:g} s", "params": reward,
                 "s": seconds, "examples": batch})  # fmt: skip
    for row in rows:
        model = row.pop("params")
        row["params"] = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
        row["preset"] = preset
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "base"], choices=PRESETS)
    parser.add_argument("--seconds", type=float, default=3.0, help="audio per clip (STA, reward model)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (as bf16: true in base.yaml)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"bf16 autocast: {args.bf16}, {args.steps} timed steps after {args.warmup} warm-up steps\n")  # fmt: skip
    print("| preset | model | trainable params | batch | ms / step | examples / s |")
    print("|---|---|---:|---|---:|---:|")
    for preset in args.presets:
        for row in bench_preset(preset, args, device):
            print(f"| {row['preset']} | {row['model']} | {row['params']:.2f} M | {row['batch']} | "
                  f"{1000 * row['s']:.0f} | {row['examples'] / row['s']:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
