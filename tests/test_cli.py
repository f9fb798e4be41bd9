"""The ``esarm`` command: help, clean errors (exit 2, no traceback), animate end to end, push --dry-run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from esarm.cli import build_parser, main

SUBCOMMANDS = ("animate", "demo", "pipeline", "evaluate", "synth", "prepare-mead", "prepare-ravdess", "push")


def test_help_of_every_subcommand(capsys):
    for command in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: esarm {command}" in capsys.readouterr().out
    assert main([]) == 2  # no command: the overview
    assert "animate" in capsys.readouterr().out


def test_console_script_is_installed():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "esarm"]
    assert script.value == "esarm.cli:main"


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.startswith("esarm ")
    return captured.err


@pytest.fixture
def speech(tmp_path) -> Path:
    import soundfile

    rate = 22050
    t = np.arange(int(0.7 * rate)) / rate
    audio = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    path = tmp_path / "speech.wav"
    soundfile.write(path, np.stack([audio, audio * 0.5], axis=1), rate)  # stereo, 22.05 kHz
    return path


def test_bad_input_is_one_line_with_exit_status_2(capsys, tmp_path, speech):
    assert "audio input not found" in _error(capsys, ["animate", str(tmp_path / "missing.wav"), "--model", "m"])
    assert "--out must end in" in _error(capsys, ["animate", str(speech), "--model", "m", "--out", "a.fbx"])
    assert "emotion must be" in _error(capsys, ["animate", str(speech), "--model", "m", "--emotion", "joyful"])
    assert "--epsilon must be in" in _error(capsys, ["animate", str(speech), "--model", "m", "--epsilon", "2"])
    (tmp_path / "empty").mkdir()
    assert "no audio files" in _error(capsys, ["animate", str(tmp_path / "empty"), "--model", "m"])
    assert "no config.json" in _error(capsys, ["animate", str(speech), "--model", str(tmp_path / "empty")])
    assert "model folder not found" in _error(capsys, ["push", str(tmp_path / "nope"), "--repo-id", "me/x"])
    assert "config not found" in _error(capsys, ["pipeline", "--config", "nope.yaml", "--output-dir", str(tmp_path)])
    assert "not found" in _error(capsys, ["evaluate", "--model", str(tmp_path / "m"), "--dataset", str(tmp_path / "d")])
    assert "not found" in _error(capsys, ["prepare-mead", str(tmp_path / "no-mead")])
    # argparse's own errors also exit with 2, on one line instead of the whole usage first
    with pytest.raises(SystemExit) as exit_info:
        main(["animate", str(speech), "--model", "m", "--intensity", "7"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "esarm animate: error: argument --intensity: invalid choice: 7 (choose from 1, 2, 3) (see esarm animate "
        "--help)\n"
    )


def test_output_paths_for_several_inputs(capsys, tmp_path, speech):
    from esarm.commands.animate import output_paths

    files = [Path("a/x.wav"), Path("b/x.wav"), Path("b/y.flac")]
    assert output_paths(files, str(tmp_path), "json") == [
        tmp_path / "a_x.json", tmp_path / "b_x.json", tmp_path / "y.json",
    ]  # fmt: skip
    assert output_paths(files[:1], "out/anim.glb", None) == [Path("out/anim.glb")]
    same_stem = [Path("clip.m4a"), Path("clip.mp3"), Path("c/clip.wav"), Path("d/c/clip.wav")]
    names = [p.name for p in output_paths(same_stem, str(tmp_path), "csv")]
    assert names == ["clip_m4a.csv", "clip_mp3.csv", "c_clip_wav_1.csv", "c_clip_wav_2.csv"]
    assert "--out must be a folder" in _error(
        capsys, ["animate", str(speech), str(speech), "--model", "m", "--out", "a.csv"]
    )


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    import torch

    from esarm import ESARMSTAConfig, ESARMSTAForGeneration

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_sta")
    ESARMSTAForGeneration(ESARMSTAConfig.tiny()).save_pretrained(folder)
    return folder


def test_animate_one_file_to_each_format(capsys, tmp_path, speech, tiny_model_dir):
    from esarm.export import load_animation

    results = {}
    for suffix in (".csv", ".json", ".glb"):
        out = tmp_path / f"anim{suffix}"
        status = main(["animate", str(speech), "--model", str(tiny_model_dir), "--emotion", "happy", "--intensity", "2",
                       "--seed", "0", "--out", str(out)])  # fmt: skip
        assert status == 0, capsys.readouterr().err
        assert str(out) in capsys.readouterr().out
        results[suffix], fps = load_animation(out)
        assert fps == pytest.approx(30)
    assert results[".csv"].shape == (21, 52)  # 0.7 s at 30 fps
    np.testing.assert_allclose(results[".csv"], results[".json"], atol=1e-5)
    np.testing.assert_allclose(results[".csv"], results[".glb"], atol=1e-5)
    document = json.loads((tmp_path / "anim.json").read_text())
    assert document["metadata"]["emotion"] == "happy"


def test_labels_follow_one_rule_in_any_case(capsys, tmp_path, speech, tiny_model_dir):
    """``--emotion HAPPY`` and ``--emotion Auto`` are accepted like the processor accepts them (esarm.labels)."""
    from esarm import ESARMProcessor

    assert ESARMProcessor().emotion_to_id("HAPPY") == ESARMProcessor().emotion_to_id("happy")
    for emotion, written in (("HAPPY", "happy"), ("Auto", None)):
        out = tmp_path / f"{emotion}.json"
        status = main(["animate", str(speech), "--model", str(tiny_model_dir), "--emotion", emotion, "--out", str(out),
                       "--threads", "1"])  # fmt: skip
        assert status == 0, capsys.readouterr().err
        document = json.loads(out.read_text())
        if written is not None:
            assert document["metadata"]["emotion"] == written


def test_animate_cpu_inference_levers(capsys, tmp_path, speech, tiny_model_dir):
    """Fused attention gives the saved model's animation; int8 leaves the tiny model's 32-wide encoder in float."""
    from esarm.export import load_animation

    results = {}
    for name, flags in (("default", []), ("as_saved", ["--no-cpu-defaults"]), ("float", ["--no-int8"])):
        out = tmp_path / f"{name}.json"
        status = main(["animate", str(speech), "--model", str(tiny_model_dir), "--emotion", "sad", "--out", str(out),
                       "--threads", "1", *flags])  # fmt: skip
        assert status == 0, capsys.readouterr().err
        results[name] = load_animation(out)[0]
    np.testing.assert_allclose(results["default"], results["as_saved"], atol=1e-5)
    np.testing.assert_allclose(results["float"], results["as_saved"], atol=1e-5)
    assert main(["animate", str(speech), "--model", str(tiny_model_dir), "--out", str(tmp_path / "x.json"),
                 "--no-int8", "--no-cpu-defaults"]) == 2  # fmt: skip
    assert "--no-int8 adjusts the CPU defaults" in capsys.readouterr().err


def test_animate_a_folder_to_mp4(capsys, tmp_path, speech, tiny_model_dir):
    import av

    folder = tmp_path / "clips"
    folder.mkdir()
    speech.rename(folder / "one.wav")
    (folder / "notes.txt").write_text("not audio")
    import shutil

    shutil.copy(folder / "one.wav", folder / "two.wav")
    out = tmp_path / "videos"
    assert main(["animate", str(folder), "--model", str(tiny_model_dir), "--format", "mp4", "--out", str(out),
                 "--video-height", "96"]) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["one.mp4", "two.mp4"]
    with av.open(str(out / "one.mp4")) as container:
        assert len(container.streams.audio) == 1 and container.streams.video[0].frames == 21


def test_push_dry_run_lists_the_upload(capsys, tmp_path):
    folder = tmp_path / "prior"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "esarm_motion_prior", "num_groups": 3}))
    (folder / "model.safetensors").write_bytes(b"")
    for leftover in ("esarm_stage_inputs.json", "esarm_stage_done.json", "metrics.json", "trainer_state.json"):
        (folder / leftover).write_text("{}")  # the pipeline runner's and the Trainer's files
    staging = tmp_path / "staging"
    assert main(["push", str(folder), "--repo-id", "me/prior", "--dry-run", str(staging)]) == 0
    out = capsys.readouterr().out
    assert "would upload to me/prior" in out and "README.md" in out and "config.json" in out
    assert sorted(p.name for p in staging.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (staging / "README.md").read_text()
    assert card.startswith("---\n") and "\nlibrary_name: transformers\n" in card


def test_parser_defaults():
    args = build_parser().parse_args(["animate", "a.wav", "--model", "m"])
    assert args.emotion == "neutral" and args.chunk_seconds == 10.0 and args.format is None
    assert not args.no_int8 and not args.no_cpu_defaults  # the CPU default levers, int8 included


@pytest.mark.slow
def test_demo_end_to_end(capsys, tmp_path):
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    if not config.exists():
        pytest.skip("configs/tiny.yaml not available")
    assert main(["demo", "--output-dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "side-by-side video" in out and ".mp4" in out
    assert list((tmp_path / "demo" / "demo").glob("*.mp4"))


def test_demo_after_the_pipeline(capsys, tmp_path, monkeypatch, tiny_model_dir, rig_path):
    """Everything ``esarm demo`` does after ``run_pipeline`` (stubbed here; the slow test runs it for real)."""
    import shutil

    import datasets

    import esarm.training.runner as runner

    output_dir = tmp_path / "demo"

    def fake_run_pipeline(config, out, resume=True, stages=None, overrides=None):
        out = Path(out)
        rng = np.random.default_rng(0)
        rows = [
            {
                "id": f"spk05_{emotion}_{intensity}_001", "speaker": "spk05", "emotion": emotion,
                "intensity": intensity, "sentence": "Hello.",
                "audio": (0.1 * rng.normal(size=8000)).astype(np.float32).tolist(), "sampling_rate": 16000,
                "blendshapes": rng.uniform(0, 1, (15, 52)).astype(np.float32).tolist(), "fps": 30.0,
            }
            for emotion, intensity in (("neutral", 1), ("sad", 1), ("happy", 3))
        ]  # fmt: skip
        split = datasets.Dataset.from_list(rows)
        datasets.DatasetDict({"train": split, "validation": split, "test": split}).save_to_disk(str(out / "corpus"))
        for name in ("sta", "rl"):
            shutil.copytree(tiny_model_dir, out / name)
        (out / "evaluation").mkdir(parents=True)
        (out / "evaluation" / "results.md").write_text("| model | LVE |\n")
        return {
            "output_dir": str(out),
            "stages": {
                "corpus": {"dataset_name_or_path": str(out / "corpus")},
                "evaluation": {"sta_lve": 3.25, "rl_lve": 3.125, "sta_emotion_accuracy": 0.5},
            },
        }

    monkeypatch.setattr(runner, "run_pipeline", fake_run_pipeline)
    monkeypatch.setenv("ESARM_RIG", str(rig_path))
    config = tmp_path / "tiny.yaml"
    config.write_text("seed: 0\n")
    assert main(["demo", "--output-dir", str(output_dir), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    # the clip with the strongest emotion, not the neutral one at index 0; headline numbers, not tables
    assert "animated clip spk05_happy_3_001" in out and "results.md" in out
    assert "STA lip vertex error (mm)  3.250" in out and "RL lip vertex error (mm)   3.125" in out
    assert len(out.splitlines()) < 25
    sample = output_dir / "demo" / "sample.wav"
    audio, rate = soundfile.read(sample)
    assert rate == 16000 and len(audio) == 8000
    next_command = out.strip().splitlines()[-1]
    assert next_command == (
        f"next: esarm animate {sample} --model {output_dir / 'rl'} --emotion happy --out {output_dir / 'demo' / 'sample.mp4'}"
    )
    video = output_dir / "demo" / "spk05_happy_3_001.mp4"
    assert str(video) in out and (output_dir / "demo" / "spk05_happy_3_001_rl.csv").exists()
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.frames == 15 and len(container.streams.audio) == 1
        assert stream.codec_context.width > 2.5 * stream.codec_context.height / 2  # three faces side by side


def test_moved_names_still_import_from_cli_with_a_future_warning(tmp_path):
    import esarm.cli
    import esarm.commands
    import esarm.commands.animate
    import esarm.loading

    for name, home in (
        ("load_model_and_processor", esarm.loading), ("check_model_folder", esarm.loading),
        ("resolve_device", esarm.loading), ("MODEL_KINDS", esarm.loading), ("CommandError", esarm.commands),
        ("OUTPUT_FORMATS", esarm.commands.animate),
    ):  # fmt: skip
        with pytest.warns(FutureWarning, match=f"esarm.cli.{name} moved to {home.__name__}.{name}"):
            assert getattr(esarm.cli, name) is getattr(home, name)
    with pytest.raises(AttributeError, match="no attribute 'cmd_animate'"):
        esarm.cli.cmd_animate  # noqa: B018
    # the old import still works and behaves like the new one
    with pytest.warns(FutureWarning):
        from esarm.cli import check_model_folder
    with pytest.raises(ValueError, match="--model .* has no config.json"):
        check_model_folder(tmp_path, "esarm_sta", "--model")


def test_every_command_module_registers_its_subcommand():
    import argparse
    import importlib

    from esarm.commands import COMMANDS

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name in COMMANDS:
        module = importlib.import_module(f"esarm.commands.{name}")
        handlers = {subparsers.choices[c].get_default("handler") for c in subparsers.choices}
        assert module.run in handlers, name
    assert set(subparsers.choices) == {*SUBCOMMANDS, "app"}
