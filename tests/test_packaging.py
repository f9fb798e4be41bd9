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


# ---- the import graph of src/esarm ------------------------------------------------------------------------------

# The layers of DESIGN.md, lowest first: a module imports its own layer and the ones below, never one above. The
# longest matching prefix names a module's layer; a new module must be placed here (the test says so).
LAYERS = {
    "esarm.blendshapes": 0, "esarm.labels": 0, "esarm.frames": 0, "esarm.utils": 0, "esarm.audio": 0,
    "esarm.file_modes": 0,
    "esarm.rig": 1,
    # the models, their configs, layers, processor, generation and pipeline (esarm/__init__ imports them)
    "esarm": 2, "esarm.configuration_esarm": 2, "esarm.speech_encoder": 2, "esarm.modules": 2,
    "esarm.model_inputs": 2, "esarm.audio_features": 2, "esarm.generation": 2, "esarm.inference": 2,
    "esarm.streaming": 2, "esarm.processing_esarm": 2, "esarm.pipeline": 2, "esarm.modeling_motion_prior": 2,
    "esarm.modeling_sta": 2, "esarm.modeling_reward": 2,
    "esarm.data": 3, "esarm.export": 3,
    "esarm.evaluation": 4, "esarm.metrics": 5,
    "esarm.phone_mouth": 4,  # a mouth from recognised phones: the data layer's viseme model and phone recogniser
    "esarm.training": 5,
    "esarm.loading": 6, "esarm.hub": 6,
    "esarm.app": 7,
    "esarm.commands": 8, "esarm.cli": 8,
}  # fmt: skip


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package) for every module under src/esarm."""
    modules = {}
    for path in (ROOT / "src" / "esarm").rglob("*.py"):
        parts = list(path.relative_to(ROOT / "src").with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the esarm modules it imports, at the top, in functions or under TYPE_CHECKING alike (a lazy import
    is still a dependency). ``from package import name`` counts as the submodule when ``name`` is one."""
    import ast

    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            else:
                continue
            for target in targets:
                while target not in modules and "." in target:
                    target = target.rpartition(".")[0]
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan): each holds an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def layer(module: str) -> int:
    prefixes = [p for p in LAYERS if module == p or module.startswith(f"{p}.")]
    assert prefixes, f"place {module} in LAYERS (tests/test_packaging.py), below the modules that import it"
    return LAYERS[max(prefixes, key=len)]


def test_no_import_circle_and_no_upward_import():
    graph = import_graph()
    assert len(graph) > 90 and graph["esarm.cli"] == {"esarm.commands"}
    assert "esarm.loading" in graph["esarm.app.ui"] and "esarm.rig" in graph["esarm.export.gltf"]
    assert import_cycles(graph) == []
    upward = sorted(
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in graph.items()
        for target in targets
        if layer(target) > layer(module)
    )
    assert upward == []


def test_the_import_checks_see_a_circle_and_an_upward_import():
    """The two checks on a graph that has both faults: a test that could not fail would prove nothing."""
    graph = {"esarm.rig.gltf": {"esarm.rig.face_rig"}, "esarm.rig.face_rig": {"esarm.rig.gltf"}, "esarm.app.ui": {"esarm.cli"}, "esarm.cli": {"esarm.app.ui"}}  # fmt: skip
    assert import_cycles(graph) == [["esarm.app.ui", "esarm.cli"], ["esarm.rig.face_rig", "esarm.rig.gltf"]]
    assert layer("esarm.cli") > layer("esarm.app.ui") > layer("esarm.loading") > layer("esarm.training")
    assert layer("esarm.data.synthetic.tts") == layer("esarm.data") < layer("esarm.training")


def test_import_esarm_registers_everything_without_an_import_hook():
    """In a fresh process, esarm first and transformers after: the Auto classes and the task are registered, and
    esarm leaves no finder on sys.meta_path."""
    import subprocess
    import sys

    code = (
        "import sys, esarm\n"
        "ours = [f for f in sys.meta_path if type(f).__module__.startswith('esarm')]; assert not ours, ours\n"
        "from transformers import AutoConfig, AutoModel, AutoProcessor\n"
        "from transformers.pipelines import PIPELINE_REGISTRY\n"
        "for t in ('esarm_sta', 'esarm_motion_prior', 'esarm_reward'): AutoConfig.for_model(t)\n"
        "assert AutoModel.from_config(esarm.ESARMRewardModelConfig.tiny()).__class__ is esarm.ESARMRewardModel\n"
        "assert 'speech-to-animation' in PIPELINE_REGISTRY.supported_tasks\n"
        "print('registered')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "registered"


def test_moved_data_modules_forward_from_their_old_paths_with_a_future_warning():
    import warnings

    import pytest

    import esarm.data
    import esarm.data.prepare.mead
    import esarm.data.synthetic.tts

    with pytest.warns(FutureWarning, match="esarm.data.mead moved to esarm.data.prepare.mead"):
        from esarm.data.mead import prepare_mead
    assert prepare_mead is esarm.data.prepare.mead.prepare_mead
    with pytest.warns(FutureWarning, match="esarm.data.tts moved to esarm.data.synthetic.tts"):
        assert esarm.data.tts.get_synthesizer is esarm.data.synthetic.tts.get_synthesizer
    assert set(esarm.data.MOVED_MODULES) == {
        "tts", "festival", "flite", "voices", "sentences", "expressions", "visemes",
        "mead", "ravdess", "preparation", "extraction", "testing",
    }  # fmt: skip
    for name, package in esarm.data.MOVED_MODULES.items():
        assert (ROOT / "src" / "esarm" / "data" / package / f"{name}.py").is_file(), name
        assert not (ROOT / "src" / "esarm" / "data" / f"{name}.py").exists(), name
    # the sub-package esarm.data.synthetic (once the module) re-exports the corpus names without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from esarm.data.synthetic import CORPUS_PRESETS, SyntheticCorpusConfig, build_synthetic_corpus, plot_example

    assert CORPUS_PRESETS == ("micro", "tiny", "small", "mead_like", "multilingual") and callable(build_synthetic_corpus)
    assert SyntheticCorpusConfig.tiny().num_speakers > 0 and callable(plot_example)
