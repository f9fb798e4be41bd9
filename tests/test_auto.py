"""Auto classes: AutoConfig / AutoModel / AutoProcessor resolve the ESARM classes, and saved folders load with
``trust_remote_code=True`` in a fresh process that never imports esarm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import soundfile
import torch
from transformers import AutoConfig, AutoModel, AutoProcessor, pipeline

import esarm
from esarm import (
    ESARMMotionPrior,
    ESARMMotionPriorConfig,
    ESARMProcessor,
    ESARMRewardModel,
    ESARMRewardModelConfig,
    ESARMSTAConfig,
    ESARMSTAForGeneration,
)
from esarm.pipeline import custom_pipelines

MODELS = [
    (ESARMMotionPriorConfig, ESARMMotionPrior, "esarm_motion_prior"),
    (ESARMSTAConfig, ESARMSTAForGeneration, "esarm_sta"),
    (ESARMRewardModelConfig, ESARMRewardModel, "esarm_reward"),
]


@pytest.mark.parametrize(("config_class", "model_class", "model_type"), MODELS)
def test_auto_config_and_model_resolve_from_a_folder(tmp_path, config_class, model_class, model_type):
    assert isinstance(AutoConfig.for_model(model_type), config_class)
    model = model_class(config_class.tiny()).eval()
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is config_class
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is model_class
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoConfig"] == f"configuration_esarm.{config_class.__name__}"
    assert auto_map["AutoModel"].endswith(f".{model_class.__name__}")
    assert AutoModel.from_config(config_class.tiny()).__class__ is model_class


def test_public_names_are_exported():
    for name in (
        "ESARMMotionPriorConfig", "ESARMSTAConfig", "ESARMRewardModelConfig", "ESARMMotionPrior",
        "ESARMSTAForGeneration", "ESARMRewardModel", "ESARMProcessor", "SpeechToAnimationPipeline",
        "EpsilonGreedyLogitsProcessor", "ranking_loss", "ARKIT_NAMES", "EMOTIONS",
    ):  # fmt: skip
        assert name in esarm.__all__ and hasattr(esarm, name), name


def test_auto_processor_resolves(tmp_path):
    processor = ESARMProcessor()
    processor.save_pretrained(tmp_path)
    ESARMSTAConfig.tiny().save_pretrained(tmp_path)
    assert type(AutoProcessor.from_pretrained(tmp_path)) is ESARMProcessor


# Packages a machine with only torch and transformers lacks: esarm itself, the quantizer library (training only),
# scipy (resampling), soundfile and PyAV (audio files). A None entry in sys.modules makes `import x` raise
# ImportError and transformers' is_x_available() report False, as on such a machine.
BLOCKED = ("esarm", "vector_quantize_pytorch", "scipy", "soundfile", "av")

REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys
    for name in sys.argv[2].split(","):
        sys.modules[name] = None  # `import name` now fails: each folder's own code must be enough
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoModel, AutoProcessor, pipeline

    root = sys.argv[1]
    expected = torch.load(root + "/expected.pt", weights_only=False)
    for name, class_name in [("prior", "ESARMMotionPrior"), ("sta", "ESARMSTAForGeneration"),
                             ("reward", "ESARMRewardModel")]:
        folder = f"{root}/{name}"
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__name__ == class_name, type(model)
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        checksum = sum(float(p.double().sum()) for p in model.state_dict().values() if p.is_floating_point())
        assert abs(checksum - expected["checksums"][name]) < 1e-6, (name, checksum)
    prior = AutoModel.from_pretrained(root + "/prior", trust_remote_code=True).eval()
    assert torch.equal(prior.encode(expected["prior_input"]), expected["prior_tokens"]), "prior tokens differ"
    assert torch.equal(prior.decode(expected["prior_tokens"]), expected["prior_decoded"]), "prior decoding differs"
    model_sta = AutoModel.from_pretrained(root + "/sta", trust_remote_code=True).eval()
    output = model_sta.generate(expected["audio"], seed=0, epsilon=0.5)
    assert torch.equal(output.motion_tokens, expected["tokens"]), "tokens differ"
    assert torch.allclose(output.blendshapes, expected["blendshapes"]), "blendshapes differ"
    processor = AutoProcessor.from_pretrained(root + "/sta", trust_remote_code=True)
    assert type(processor).__name__ == "ESARMProcessor" and processor.speakers == ["alice"]
    features = processor(np.zeros(16000, np.float32) + 0.1, sampling_rate=16000, emotion="happy", speaker="alice")
    assert features["emotion_ids"].tolist() == [5] and features["speaker_ids"].tolist() == [1]
    animate = pipeline("speech-to-animation", model=root + "/sta", trust_remote_code=True)
    assert type(animate).__module__.startswith("transformers_modules."), type(animate).__module__
    for key, call in [("pipeline_array", lambda: animate(expected["audio"][0].numpy(), sampling_rate=16000,
                                                           emotion="sad", speaker="alice")),
                      ("pipeline_wav", lambda: animate(root + "/speech_22k.wav", emotion="sad", intensity=3)),
                      ("pipeline_chunked", lambda: animate(expected["long_audio"], sampling_rate=16000,
                                                             emotion="angry", chunk_length_s=0.6))]:
        result = call()
        np.testing.assert_allclose(result["blendshapes"], expected[key], atol=1e-4, err_msg=key)
    loaded = sorted(name for name in sys.argv[2].split(",") if sys.modules.get(name) is not None)
    assert not loaded, loaded
    print("OK")
    """
)


def test_saved_folders_load_with_remote_code_without_esarm(tmp_path):
    """Without esarm, vector-quantize-pytorch, scipy, soundfile and PyAV: the models, the processor and the pipeline
    (arrays, a 22.05 kHz WAV file, chunked long audio) give the numbers esarm gives."""
    models = {
        "prior": ESARMMotionPrior(ESARMMotionPriorConfig.tiny()).eval(),
        "sta": ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval(),
        "reward": ESARMRewardModel(ESARMRewardModelConfig.tiny()),
    }
    checksums = {}
    for name, model in models.items():
        model.save_pretrained(tmp_path / name)
        checksums[name] = sum(float(p.double().sum()) for p in model.state_dict().values() if p.is_floating_point())
    ESARMProcessor(speakers=["alice"]).save_pretrained(tmp_path / "sta")
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(1, 12000, generator=generator) * 0.1
    long_audio = (torch.randn(40000, generator=generator) * 0.1).numpy()
    speech_22k = (torch.randn(22050, generator=generator) * 0.1).numpy()
    soundfile.write(tmp_path / "speech_22k.wav", speech_22k, 22050, subtype="PCM_16")
    output = models["sta"].generate(audio, seed=0, epsilon=0.5)
    prior_input = torch.rand(2, 12, 52, generator=generator)
    prior_tokens = models["prior"].encode(prior_input)
    animate = pipeline("speech-to-animation", model=str(tmp_path / "sta"))
    expected = {
        "audio": audio, "tokens": output.motion_tokens, "blendshapes": output.blendshapes, "checksums": checksums,
        "prior_input": prior_input, "prior_tokens": prior_tokens, "prior_decoded": models["prior"].decode(prior_tokens),
        "long_audio": long_audio,
        "pipeline_array": animate(audio[0].numpy(), sampling_rate=16000, emotion="sad", speaker="alice")["blendshapes"],
        "pipeline_wav": animate(str(tmp_path / "speech_22k.wav"), emotion="sad", intensity=3)["blendshapes"],
        "pipeline_chunked": animate(long_audio, sampling_rate=16000, emotion="angry", chunk_length_s=0.6)["blendshapes"],
    }  # fmt: skip
    torch.save(expected, tmp_path / "expected.pt")
    copied = {path.name for path in (tmp_path / "sta").glob("*.py")}
    assert {"modeling_sta.py", "configuration_esarm.py", "modules.py", "generation.py", "pipeline.py"} <= copied
    assert json.loads((tmp_path / "sta" / "config.json").read_text())["custom_pipelines"] == custom_pipelines()
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1", PYTHONPATH="")  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, str(tmp_path), ",".join(BLOCKED)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")


def test_sta_from_a_state_dict_without_a_folder():
    """from_pretrained(None, config=..., state_dict=...) has no folder to read generation_config.json from."""
    config = ESARMSTAConfig.tiny()
    model = ESARMSTAForGeneration(config)
    loaded = ESARMSTAForGeneration.from_pretrained(None, config=config, state_dict=model.state_dict())
    assert loaded.generation_config.epsilon == model.generation_config.epsilon
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
