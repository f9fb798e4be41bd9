"""Shared fixtures: tiny configs built in one place, the face rig, and a tiny synthetic corpus."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from esarm.rig import EMBEDDED_RIG, RIG_ENV, FaceRig

# Tests referee the rig embedded in the package, whatever rig the developer's shell points at; tests of the
# resolver set the variable themselves.
os.environ.pop(RIG_ENV, None)

# Tiny models spend more time synchronising threads than computing: one intra-op thread makes the suite several
# times faster on 2 cores and keeps timings stable when pytest shares the machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread during each test, whatever an earlier test left behind (restored afterwards)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_motion_prior_config():
    from esarm import ESARMMotionPriorConfig

    return ESARMMotionPriorConfig.tiny()


@pytest.fixture
def tiny_sta_config():
    from esarm import ESARMSTAConfig

    return ESARMSTAConfig.tiny()


@pytest.fixture
def tiny_reward_config():
    from esarm import ESARMRewardModelConfig

    return ESARMRewardModelConfig.tiny()


@pytest.fixture(scope="session")
def repo_script():
    """``repo_script("benchmarks/x.py")`` imports a script of the repository by its path (benchmarks/ and scripts/
    are not packages), so tests can call its functions and ``main``."""

    def load(relative_path: str):
        path = Path(__file__).resolve().parents[1] / relative_path
        spec = importlib.util.spec_from_file_location(f"{path.parent.name}_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def rig_path() -> Path:
    """The rig file embedded in esarm (ICT-FaceKit's face area, 9409 vertices)."""
    return EMBEDDED_RIG


@pytest.fixture(scope="session")
def rig(rig_path) -> FaceRig:
    return FaceRig.from_npz(rig_path)


@pytest.fixture(scope="module")
def micro_corpus(tmp_path_factory) -> Path:
    """The ``micro`` synthetic corpus saved with ``save_to_disk`` (built once per test module)."""
    from esarm.data import SyntheticCorpusConfig, build_synthetic_corpus

    return build_synthetic_corpus(
        SyntheticCorpusConfig.micro(), tmp_path_factory.mktemp("corpus") / "micro", progress=False
    )
