"""transformers' own common model and config tests (``ModelTesterMixin``, ``ConfigTester``) on the three tiny models.

The test files come from the source distribution of the *installed* transformers version, downloaded with pip into a
cache at test time (never copied into this repository), so the checks follow the transformers esarm runs with. The
module skips, with the reason, when the package index cannot be reached.

The sdist ships ``tests/test_modeling_common.py`` and ``tests/test_configuration_common.py`` but not three helper
modules they import. They are registered here as the least that lets the two files import, and nothing they hold
is run against esarm:

- ``exporters/test_export.py``: ``ExportTesterMixin``, a base class of ``ModelTesterMixin`` holding the
  ``torch.export`` tests (an empty base: no export test runs);
- ``generation/test_utils.py``: ``GenerationTesterMixin``, only used for an ``issubclass`` check;
- ``utils/test_configuration_utils.py``: ``config_common_kwargs``, the values of ``PreTrainedConfig``'s common
  arguments that ``ConfigTester.check_config_arguments_init`` sets (empty: that one check sets none).

Every inherited test that does not apply to a model is switched off below with a one-line reason; none is switched
off because it fails. The first run downloads 10.7 MB (about 20 s); later runs take about 60 s on one CPU thread:
marked slow.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
import tarfile
import types
import unittest
from pathlib import Path

import pytest
import torch
import transformers

from esarm import (
    ESARMMotionPrior,
    ESARMMotionPriorConfig,
    ESARMRewardModel,
    ESARMRewardModelConfig,
    ESARMSTAConfig,
    ESARMSTAForGeneration,
)

pytestmark = pytest.mark.slow

VERSION = transformers.__version__
CACHE = Path(os.environ.get("ESARM_CACHE", Path.home() / ".cache" / "esarm")) / "transformers-sdist" / VERSION
PACKAGE = "transformers_common_tests"


def _pip(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--quiet", "--timeout", "30"]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _fetch_common_tests() -> Path:
    """The ``tests`` folder of the installed transformers' sdist and the pure-Python test dependency it needs."""
    tests = CACHE / f"transformers-{VERSION}" / "tests"
    if not (tests / "test_modeling_common.py").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        result = _pip("download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
                      f"transformers=={VERSION}", "-d", str(CACHE))  # fmt: skip
        archive = CACHE / f"transformers-{VERSION}.tar.gz"
        if result.returncode != 0 or not archive.exists():
            pytest.skip(f"cannot download the transformers {VERSION} sdist (package index unreachable?): "
                        f"{result.stderr.strip()[-300:]}", allow_module_level=True)  # fmt: skip
        with tarfile.open(archive) as sdist:
            members = [m for m in sdist.getmembers() if m.name.startswith(f"transformers-{VERSION}/tests/")]
            sdist.extractall(CACHE, members=members, filter="data")
    # The sdist leaves out the (empty) tests/__init__.py that test_configuration_common.py loads at import.
    (tests / "__init__.py").touch()
    if importlib.util.find_spec("parameterized") is None:
        deps = CACHE / "deps"
        if not (deps / "parameterized").exists():
            result = _pip("install", "--no-deps", "--target", str(deps), "parameterized")
            if result.returncode != 0:
                pytest.skip(f"cannot install parameterized (package index unreachable?): {result.stderr[-300:]}",
                            allow_module_level=True)  # fmt: skip
        sys.path.append(str(deps))
    return tests


def _import_common_tests(tests: Path) -> tuple[type, type]:
    """Import the two files as a package (their relative imports need one) with the helper modules registered."""
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(tests)]
        sys.modules[PACKAGE] = package
        helpers = {
            "exporters.test_export": {"ExportTesterMixin": type("ExportTesterMixin", (), {})},
            "generation.test_utils": {"GenerationTesterMixin": type("GenerationTesterMixin", (), {})},
            "utils.test_configuration_utils": {"config_common_kwargs": {}},
        }
        for name, attributes in helpers.items():
            parent, _ = name.split(".")
            sys.modules.setdefault(f"{PACKAGE}.{parent}", types.ModuleType(f"{PACKAGE}.{parent}"))
            module = types.ModuleType(f"{PACKAGE}.{name}")
            module.__dict__.update(attributes)
            sys.modules[f"{PACKAGE}.{name}"] = module
    modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
    configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    return modeling.ModelTesterMixin, configuration.ConfigTester


ModelTesterMixin, ConfigTester = _import_common_tests(_fetch_common_tests())
# The eager-vs-SDPA cases and the decorator that expands them into one test each, as the sdist's module holds them
_MODELING_COMMON = sys.modules[ModelTesterMixin.__module__]
EAGER_MATCHES_SDPA_CASES = _MODELING_COMMON.TEST_EAGER_MATCHES_SDPA_INFERENCE_PARAMETERIZATION
expand = _MODELING_COMMON.parameterized.expand

BATCH = 2
SAMPLES = 8000  # 0.5 s at 16 kHz: 15 frames at 30 fps, 8 motion steps of 2 frames
STEPS = 8


# ---- model testers (transformers' ModelTester pattern: a config and inputs for the common tests) --------------


class MotionPriorTester:
    def __init__(self, parent):
        self.parent = parent
        self.batch_size = BATCH
        self.is_training = True
        self.config = ESARMMotionPriorConfig.tiny(kmeans_init=False)
        # hidden_states = the G region latents before quantization, one step per token
        self.expected_num_hidden_layers = self.config.num_groups
        self.num_hidden_layers = self.config.num_groups - 1
        self.seq_length = STEPS
        self.hidden_size = self.config.latent_dim

    def get_config(self):
        return ESARMMotionPriorConfig.tiny(kmeans_init=False)

    def prepare_config_and_inputs_for_common(self):
        blendshapes = torch.rand(BATCH, 2 * STEPS, 52)
        return self.get_config(), {"blendshapes": blendshapes, "attention_mask": torch.ones(BATCH, 2 * STEPS)}


def _speech_inputs(config) -> dict:
    return {
        "input_values": torch.randn(BATCH, SAMPLES) * 0.1,
        "attention_mask": torch.ones(BATCH, SAMPLES, dtype=torch.long),
        "emotion_ids": torch.tensor([1, 5]),
        "intensity_ids": torch.tensor([2, 0]),
        "speaker_ids": torch.tensor([0, 1]),
        "motion_tokens": torch.randint(0, config.codebook_size, (BATCH, STEPS, config.num_groups)),
        "motion_mask": torch.ones(BATCH, STEPS, dtype=torch.bool),
    }


class STATester:
    def __init__(self, parent):
        self.parent = parent
        self.batch_size = BATCH
        self.is_training = True
        config = self.get_config()
        self.num_hidden_layers = config.num_hidden_layers
        self.num_attention_heads = config.num_attention_heads
        self.seq_length = STEPS
        self.hidden_size = config.hidden_size

    def get_config(self):
        return ESARMSTAConfig.tiny(num_speakers=1)

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        return config, _speech_inputs(config)


class RewardTester:
    def __init__(self, parent):
        self.parent = parent
        self.batch_size = BATCH
        self.is_training = True
        config = self.get_config()
        self.num_hidden_layers = config.num_hidden_layers
        self.num_attention_heads = config.num_attention_heads
        self.seq_length = 3 + 2 * STEPS  # condition prefix, then interleaved audio and motion positions
        self.hidden_size = config.hidden_size

    def get_config(self):
        return ESARMRewardModelConfig.tiny(num_speakers=1)

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        return config, _speech_inputs(config)


# ---- what does not apply (one reason each) --------------------------------------------------------------------


def _off(reason: str):
    return unittest.skip(reason)


class _ESARMCommonTests(ModelTesterMixin):
    test_resize_embeddings = False  # motion-token tables are sized by the motion prior's codebook, not a vocabulary
    test_mismatched_shapes = False  # needs a classification head (num_labels); these models have none
    test_torch_exportable = False  # the export tests live in a module the sdist does not ship

    def test_model_outputs_equivalence(self):
        """transformers' test, with bool tensors compared exactly.

        Its failure message subtracts the two outputs eagerly, which bool tensors cannot (``RuntimeError``), so the
        inherited test fails on any bool output whatever the values. The masks (``token_mask``, ``motion_mask``)
        stay bool because callers index with them (``x[outputs.motion_mask]``): a 0/1 integer mask would silently
        gather rows 0 and 1 instead.
        """
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()

        def check(expected, given, path):
            if isinstance(expected, (list, tuple)):
                self.assertEqual(len(expected), len(given), path)
                for index, (left, right) in enumerate(zip(expected, given)):
                    check(left, right, f"{path}[{index}]")
            elif isinstance(expected, torch.Tensor):
                self.assertEqual(expected.dtype, given.dtype, path)
                if expected.dtype == torch.bool:
                    self.assertTrue(torch.equal(expected, given), path)
                else:
                    torch.testing.assert_close(given, expected, atol=1e-5, rtol=0, equal_nan=True, msg=path)
            else:
                self.assertEqual(expected, given, path)

        for model_class in self.all_model_classes:
            model = model_class(copy.deepcopy(config)).eval()
            for return_labels in (False, True):
                extras = [{}, {"output_hidden_states": True}]
                if self.has_attentions:
                    extras += [{"output_attentions": True}, {"output_hidden_states": True, "output_attentions": True}]
                for extra in extras:
                    inputs = self._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
                    with torch.no_grad():
                        as_tuple = model(**inputs, return_dict=False, **extra)
                        as_dict = model(**inputs, return_dict=True, **extra).to_tuple()
                    self.assertIsInstance(as_tuple, tuple)
                    check(as_dict, as_tuple, f"{model_class.__name__} labels={return_labels} {extra}")


class MotionPriorCommonTest(_ESARMCommonTests, unittest.TestCase):
    all_model_classes = (ESARMMotionPrior,)
    has_attentions = False  # a convolutional auto-encoder: no attention

    def setUp(self):
        self.model_tester = MotionPriorTester(self)
        self.config_tester = ConfigTester(self, config_class=ESARMMotionPriorConfig, has_text_modality=False,
                                          common_properties=["hidden_size"], hidden_size=32)  # fmt: skip

    def test_config(self):
        self.config_tester.run_common_tests()

    @_off("a convolutional auto-encoder: no input embedding table")
    def test_model_get_set_embeddings(self):
        pass

    @_off("codebook_usage and perplexity are statistics of the whole batch, not one value per row")
    def test_batching_equivalence(self):
        pass


class STACommonTest(_ESARMCommonTests, unittest.TestCase):
    all_model_classes = (ESARMSTAForGeneration,)
    # generate is ESARM's own (G tokens per step, length fixed by the audio): GenerationMixin's tests do not apply
    all_generative_model_classes = ()  # output_attentions: the motion transformer's weights

    def setUp(self):
        self.model_tester = STATester(self)
        self.config_tester = ConfigTester(self, config_class=ESARMSTAConfig, has_text_modality=False,
                                          common_properties=["hidden_size", "num_attention_heads",
                                                             "num_hidden_layers"], hidden_size=32)  # fmt: skip

    def test_config(self):
        self.config_tester.run_common_tests()

    @expand(EAGER_MATCHES_SDPA_CASES)
    @_off("attn_implementation selects nothing: the attention is SDPA, eager only to return weights (same code)")
    def test_eager_matches_sdpa_inference(self, *case):
        pass

    def test_model_get_set_embeddings(self):
        """Overridden as transformers' MusicGen test is: one embedding table per codebook (the G face-region
        groups), so ``get_input_embeddings`` is a ``ModuleList`` of ``nn.Embedding``; no output embeddings."""
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        model = ESARMSTAForGeneration(config)
        tables = model.get_input_embeddings()
        self.assertEqual(len(tables), config.num_groups)
        for table in tables:
            self.assertIsInstance(table, torch.nn.Embedding)
            self.assertEqual(tuple(table.weight.shape), (config.codebook_size, config.hidden_size))
        replacement = torch.nn.ModuleList(torch.nn.Embedding(config.codebook_size, config.hidden_size)
                                          for _ in range(config.num_groups))  # fmt: skip
        model.set_input_embeddings(replacement)
        self.assertIs(model.get_input_embeddings(), replacement)
        self.assertIsNone(model.get_output_embeddings())


class RewardCommonTest(_ESARMCommonTests, unittest.TestCase):
    all_model_classes = (ESARMRewardModel,)  # output_attentions: the causal transformer's weights

    def setUp(self):
        self.model_tester = RewardTester(self)
        self.config_tester = ConfigTester(self, config_class=ESARMRewardModelConfig, has_text_modality=False,
                                          common_properties=["hidden_size", "num_attention_heads",
                                                             "num_hidden_layers"], hidden_size=32)  # fmt: skip

    def test_config(self):
        self.config_tester.run_common_tests()

    @expand(EAGER_MATCHES_SDPA_CASES)
    @_off("attn_implementation selects nothing: the attention is SDPA, eager only to return weights (same code)")
    def test_eager_matches_sdpa_inference(self, *case):
        pass

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        """With ``return_labels``, the ``labels`` the model documents: one target return per trajectory (an MSE
        regression loss, as transformers' ``num_labels=1`` heads)."""
        inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels:
            inputs["labels"] = torch.randn(BATCH)
        return inputs
