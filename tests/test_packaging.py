"""The package metadata ships every subpackage, the model-card templates and the pipeline presets."""

from __future__ import annotations

import importlib.resources
import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set(find_packages(str(ROOT / "src")))
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"


def test_presets_and_card_templates_are_package_resources():
    configs = importlib.resources.files("esarm.configs")
    cards = importlib.resources.files("esarm.model_cards")
    assert (configs / "tiny.yaml").is_file() and (configs / "base.yaml").is_file()
    assert {"esarm_sta.md.j2", "esarm_motion_prior.md.j2", "esarm_reward.md.j2"} <= {p.name for p in cards.iterdir()}
