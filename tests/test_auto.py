"""Auto classes: AutoConfig / AutoModel / AutoProcessor resolve the ESARM classes, and saved folders load with
``trust_remote_code=True`` in a fresh process that never imports esarm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoProcessor

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


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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


REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["esarm"] = None  # any `import esarm` now fails: the folder's own code must be enough
    import torch
    from transformers import AutoConfig, AutoModel

    folder = sys.argv[1]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__name__ == "ESARMSTAForGeneration", type(model)
    assert "esarm" not in type(model).__module__.split(".")[0], type(model).__module__
    inputs = torch.load(folder + "/expected.pt")
    output = model.generate(inputs["audio"], seed=0, epsilon=0.5)
    assert torch.equal(output.motion_tokens, inputs["tokens"]), "tokens differ"
    assert torch.allclose(output.blendshapes, inputs["blendshapes"]), "blendshapes differ"
    print("OK", type(config).__name__, type(model).__module__)
    """
)


def test_saved_folder_loads_with_remote_code_without_esarm(tmp_path):
    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval()
    folder = tmp_path / "sta"
    model.save_pretrained(folder)
    audio = torch.randn(1, 12000, generator=torch.Generator().manual_seed(0)) * 0.1
    output = model.generate(audio, seed=0, epsilon=0.5)
    torch.save({"audio": audio, "tokens": output.motion_tokens, "blendshapes": output.blendshapes},
               folder / "expected.pt")  # fmt: skip
    copied = {path.name for path in folder.glob("*.py")}
    assert {"modeling_sta.py", "configuration_esarm.py", "modeling_utils.py", "generation.py"} <= copied
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1", PYTHONPATH="")  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, str(folder)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("OK ESARMSTAConfig")
