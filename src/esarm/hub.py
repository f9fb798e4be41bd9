"""Share trained models on the Hugging Face Hub with a model card.

:func:`push_to_hub` uploads a ``save_pretrained`` folder (STA model, RL policy, motion prior, reward model or
processor) with a ``README.md`` rendered from the Jinja templates in ``model_cards/`` (intended use, training
data, metrics table from the evaluation report JSON, limitations, licence, how to load). Loading back is the usual
``from_pretrained("user/repo")`` of each class (and ``pipeline("speech-to-animation", model="user/repo")``).

:func:`prepare_upload_folder` builds the folder that would be uploaded (used by ``esarm push --dry-run`` and the
tests); :func:`render_model_card` renders a card alone.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers.dynamic_module_utils import custom_object_save

from esarm.blendshapes import EMOTIONS, FACE_REGIONS
from esarm.pipeline import TASK, SpeechToAnimationPipeline, custom_pipelines
from esarm.training.checkpoints import DONE_MARKER, METRICS_FILE

logger = logging.getLogger(__name__)

__all__ = [
    "card_data",
    "detect_kind",
    "eval_results_from_report",
    "prepare_upload_folder",
    "push_model_to_hub",
    "push_to_hub",
    "render_model_card",
]

KINDS = ("sta", "rl", "motion_prior", "reward", "processor")
TEMPLATES = {
    "sta": "esarm_sta.md.j2",
    "rl": "esarm_sta.md.j2",
    "motion_prior": "esarm_motion_prior.md.j2",
    "reward": "esarm_reward.md.j2",
    "processor": "esarm_processor.md.j2",
}
TITLES = {
    "sta": "ESARM speech-to-animation model",
    "rl": "ESARM speech-to-animation model (RL fine-tuned)",
    "motion_prior": "ESARM motion prior",
    "reward": "ESARM reward model",
    "processor": "ESARM processor",
}
# Training leftovers and the stage runner's bookkeeping (esarm_stage_done.json, esarm_stage_inputs.json): not part
# of a published model repository.
EXCLUDED = (DONE_MARKER, "esarm_stage_*.json", METRICS_FILE, "checkpoint-*", "runs", "optimizer.pt", "scheduler.pt", "rng_state*.pth",
            "trainer_state.json", "training_args.bin", "pipeline_results.json", ".done*", "*.tmp", "__pycache__")  # fmt: skip
# The Hub's task list has no audio-to-facial-animation task: "other" is its catch-all, the task name goes in tags.
PIPELINE_TAG = "other"
TAGS = {
    "sta": ["speech-to-animation", "facial-animation", "blendshapes", "arkit", "esarm", "custom_code"],
    "rl": ["speech-to-animation", "facial-animation", "blendshapes", "arkit", "reinforcement-learning", "rlhf",
           "esarm", "custom_code"],
    "motion_prior": ["facial-animation", "blendshapes", "arkit", "vq-vae", "esarm", "custom_code"],
    "reward": ["facial-animation", "reward-model", "rlhf", "esarm", "custom_code"],
    "processor": ["speech-to-animation", "processor", "esarm"],
}  # fmt: skip
# The front matter is the Hub's (ModelCardData); the body is our template, rendered with its shared macros.
CARD_TEMPLATE = "---\n{{ card_data }}\n---\n\n{{ body }}"
DEFAULT_TRAINING_DATA = (
    "The synthetic emotional-speech corpus of esarm (eSpeak NG speech with viseme-driven ARKit blendshapes and "
    "per-emotion facial styles; `esarm synth`), unless the run's config says otherwise. For the paper's setting, "
    "train on MEAD (`esarm prepare-mead`): 48 actors, 8 emotions, 3 intensities, with blendshapes extracted from "
    "the frontal videos."
)


def template_dir() -> Path:
    """Folder of the card templates: ``$ESARM_MODEL_CARDS``, else the repository's ``model_cards/`` as installed
    with the package (``esarm.model_cards``)."""
    candidates = [os.environ.get("ESARM_MODEL_CARDS"), str(importlib.resources.files("esarm.model_cards"))]
    for candidate in candidates:
        if candidate and (Path(candidate) / TEMPLATES["sta"]).is_file():
            return Path(candidate)
    raise FileNotFoundError("model card templates not found: set ESARM_MODEL_CARDS to the model_cards/ folder")


def detect_kind(folder: str | os.PathLike) -> str:
    """``"sta"``, ``"rl"``, ``"motion_prior"``, ``"reward"`` or ``"processor"`` from a saved folder's files."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        model_type = config.get("model_type")
        if model_type == "esarm_sta":
            rl_markers = ("rl_config.json", "rl_results.json")
            return (
                "rl" if config.get("esarm_stage") == "rl" or any((folder / m).exists() for m in rl_markers) else "sta"
            )
        if model_type == "esarm_motion_prior":
            return "motion_prior"
        if model_type == "esarm_reward":
            return "reward"
        raise ValueError(f"{folder}: config.json has model_type {model_type!r}, expected an esarm model")
    if (folder / "processor_config.json").is_file() or (folder / "preprocessor_config.json").is_file():
        return "processor"
    raise ValueError(
        f"{folder} is not a saved esarm model or processor folder (no config.json / processor_config.json)"
    )


def _load_report(report: str | os.PathLike | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if report is None or isinstance(report, Mapping):
        return report
    path = Path(report)
    if not path.is_file():
        raise FileNotFoundError(f"report not found: {path}")
    return json.loads(path.read_text())


def metrics_from_report(report: Mapping[str, Any] | None, digits: int = 2) -> dict[str, Any] | None:
    """The card's metrics table from an evaluation report JSON (``esarm evaluate`` / ``run_evaluation``):
    one row per model, one column per numeric metric."""
    if not report:
        return None
    models = report.get("models") or {}
    if not models and isinstance(report.get("metrics"), Mapping):
        models = {report.get("name", "model"): report["metrics"]}
    columns: list[str] = []
    for numbers in models.values():
        for key, value in numbers.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in columns:
                columns.append(key)
    if not columns:
        return None
    rows = []
    for name, numbers in models.items():
        values = []
        for column in columns:
            value = numbers.get(column)
            values.append("–" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value)))
        rows.append({"name": name, "values": values})
    return {"dataset": report.get("dataset", "?"), "split": report.get("split", "test"), "rig": report.get("rig"),
            "columns": columns, "rows": rows}  # fmt: skip


def _count_parameters(folder: Path) -> str:
    total = 0
    for path in folder.glob("*.safetensors"):
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as handle:
                for key in handle.keys():
                    shape = handle.get_slice(key).get_shape()
                    count = 1
                    for size in shape:
                        count *= size
                    total += count
        except Exception:  # noqa: BLE001 - a card without the count is still a card
            return "unknown"
    if total == 0:
        return "unknown"
    return f"{total / 1e6:.1f} M" if total >= 1e5 else f"{total:,}"


def _card_context(folder: Path | None, kind: str, repo_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    prior = config.get("motion_prior_config") or config
    audio = config.get("audio_encoder_config") or {}
    audio_name = config.get("audio_encoder_name_or_path") or (
        f"{audio.get('model_type', 'wavlm')} (random init, {audio.get('num_hidden_layers', '?')} layers)"
    )
    extractor = config.get("feature_extractor") or {}
    speakers = list(config.get("speakers") or [])
    return {
        "repo_id": repo_id,
        "kind": kind,
        "is_rl": kind == "rl",
        "title": TITLES[kind],
        "fps": config.get("fps", prior.get("fps", 30)),
        "emotions": list(EMOTIONS),
        "regions": ", ".join(FACE_REGIONS),
        "num_groups": prior.get("num_groups", len(FACE_REGIONS)),
        "codebook_size": prior.get("codebook_size", "?"),
        "frames_per_token": prior.get("frames_per_token", "?"),
        "hidden_size": config.get("hidden_size", "?"),
        "num_layers": config.get("num_hidden_layers", "?"),
        "num_speakers": config.get("num_speakers", len(speakers)),
        "first_speaker": repr(speakers[0]) if speakers else "None",
        "gamma": config.get("gamma", "?"),
        "audio_encoder": audio_name,
        "sampling_rate": extractor.get("sampling_rate", config.get("sampling_rate", 16000)),
        "num_parameters": _count_parameters(folder) if folder is not None else "unknown",
        # AutoProcessor.from_pretrained(repo) needs the processor's files in the repository
        "has_processor": folder is not None
        and any((folder / name).is_file() for name in ("processor_config.json", "preprocessor_config.json")),
    }


def _is_hub_id(name: Any) -> bool:
    """``"owner/name"`` of a Hub repository (not a local path)."""
    return isinstance(name, str) and name.count("/") == 1 and not name.startswith((".", "/", "~")) and all(
        name.split("/")
    )


def eval_results_from_report(
    report: Mapping[str, Any] | None, model_name: str | None = None, kind: str | None = None
) -> list[EvalResult]:
    """The card's model-index: one ``EvalResult`` per numeric metric of one model of an evaluation report.

    The model is the report row ``model_name``; by default the only row, else the row named ``kind`` (``"sta"``,
    ``"rl"``); with several rows and none of these, no results (the card's table still lists every row).
    """
    if not report:
        return []
    models = report.get("models") or {}
    if not models and isinstance(report.get("metrics"), Mapping):
        models = {report.get("name", "model"): report["metrics"]}
    if model_name is None:
        model_name = next(iter(models)) if len(models) == 1 else (kind if kind in models else None)
        if model_name is None:
            logger.warning("report has models %s: pass report_model to choose the card's model-index", list(models))
            return []
    elif model_name not in models:
        raise ValueError(f"report_model must name a model of the report {list(models)}, got {model_name!r}")
    dataset = str(report.get("dataset", "unknown"))
    return [
        EvalResult(
            task_type="other",
            task_name="Speech-driven 3D facial animation",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=str(report.get("split", "test")),
            metric_type=key,
            metric_name=key,
            metric_value=value,
        )
        for key, value in models[model_name].items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]


def card_data(
    kind: str,
    repo_id: str,
    config: Mapping[str, Any],
    report: Mapping[str, Any] | None = None,
    datasets: list[str] | None = None,
    license: str = "apache-2.0",  # noqa: A002 - the Hub's field name
    base_model: str | None = None,
    report_model: str | None = None,
) -> ModelCardData:
    """The card's metadata: library, task, base model, datasets, licence, tags and the model-index."""
    if base_model is None and kind == "sta" and _is_hub_id(config.get("audio_encoder_name_or_path")):
        base_model = config["audio_encoder_name_or_path"]  # the pretrained speech encoder it was fine-tuned from
    eval_results = eval_results_from_report(report, report_model, kind)
    return ModelCardData(
        model_name=repo_id.split("/")[-1],
        # Every folder loads with transformers alone (trust_remote_code): the Hub shows transformers' snippet.
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG if kind != "processor" else None,
        base_model=base_model,
        datasets=list(datasets) if datasets else None,
        license=license,
        tags=list(TAGS[kind]),
        eval_results=eval_results or None,
    )


def render_model_card(
    kind: str,
    repo_id: str,
    config: Mapping[str, Any] | None = None,
    report: str | os.PathLike | Mapping[str, Any] | None = None,
    folder: str | os.PathLike | None = None,
    training_data: str | None = None,
    training_data_short: str = "the esarm synthetic corpus",
    datasets: list[str] | None = None,
    license: str = "apache-2.0",  # noqa: A002 - the Hub's field name
    epsilons: list[float] | None = None,
    base_model: str | None = None,
    report_model: str | None = None,
) -> str:
    """Render the model card (markdown with YAML front matter) of a ``kind`` of model for ``repo_id``.

    The front matter is ``huggingface_hub.ModelCardData`` (:func:`card_data`) and the card a
    ``ModelCard.from_template``; the body comes from the Jinja templates in ``model_cards/``.

    Args:
        kind: one of ``"sta"``, ``"rl"``, ``"motion_prior"``, ``"reward"``, ``"processor"``.
        config: the model's ``config.json`` (or the processor's config) as a dict: sizes shown in the card.
        report: evaluation report (dict or JSON path): the metrics table and the model-index.
        folder: the saved folder (parameter count from its safetensors).
        training_data: paragraph describing the training data (default: the synthetic corpus / MEAD note).
        datasets: Hub dataset ids the model was trained on (metadata).
        base_model: Hub id of the model this one was fine-tuned from (default for ``"sta"``: its pretrained speech
            encoder, ``audio_encoder_name_or_path``, when that is a Hub id).
        report_model: the report's row that is this model (see :func:`eval_results_from_report`).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    environment = Environment(
        loader=FileSystemLoader(str(template_dir())), undefined=StrictUndefined, keep_trailing_newline=True
    )
    config = dict(config or {})
    loaded = _load_report(report)
    context = _card_context(Path(folder) if folder else None, kind, repo_id, config)
    context.update(
        metrics=metrics_from_report(loaded),
        training_data=training_data or DEFAULT_TRAINING_DATA,
        training_data_short=training_data_short,
        license=license,
        epsilons=epsilons or [0.02, 0.25, 0.5, 0.75, 1.0],
        task=TASK,
    )
    body = environment.get_template(TEMPLATES[kind]).render(**context)
    data = card_data(kind, repo_id, config, loaded, datasets, license, base_model, report_model)
    return str(ModelCard.from_template(data, template_str=CARD_TEMPLATE, body=body))


def _read_config(folder: Path, kind: str) -> dict[str, Any]:
    for name in ("config.json", "processor_config.json", "preprocessor_config.json"):
        if (folder / name).is_file():
            config = json.loads((folder / name).read_text())
            if name == "processor_config.json" and (folder / "preprocessor_config.json").is_file():
                config.setdefault("feature_extractor", json.loads((folder / "preprocessor_config.json").read_text()))
            return config
    return {}


def _add_custom_pipeline(folder: Path) -> None:
    """Make an STA folder saved before models carried their pipeline (``custom_pipelines``) carry it."""
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    if config.get("custom_pipelines") and (folder / "pipeline.py").is_file():
        return
    config["custom_pipelines"] = custom_pipelines()
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    custom_object_save(SpeechToAnimationPipeline, folder)


def prepare_upload_folder(
    folder: str | os.PathLike,
    staging_dir: str | os.PathLike,
    repo_id: str,
    report: str | os.PathLike | Mapping[str, Any] | None = None,
    kind: str = "auto",
    **card_kwargs: Any,
) -> Path:
    """Copy what would be uploaded from ``folder`` into ``staging_dir``: the model / processor files without
    training leftovers (checkpoints, optimizer state, logs), the rendered ``README.md`` card and, if given, the
    report as ``eval_results.json``."""
    folder, staging = Path(folder), Path(staging_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    if "/" not in repo_id or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id must look like 'user/name', got {repo_id!r}")
    kind = detect_kind(folder) if kind == "auto" else kind
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(folder, staging, ignore=shutil.ignore_patterns(*EXCLUDED))
    if kind in ("sta", "rl"):
        _add_custom_pipeline(staging)
    loaded = _load_report(report)
    card = render_model_card(
        kind, repo_id, config=_read_config(folder, kind), report=loaded, folder=folder, **card_kwargs
    )
    (staging / "README.md").write_text(card, encoding="utf-8")
    if loaded is not None:
        (staging / "eval_results.json").write_text(json.dumps(loaded, indent=2), encoding="utf-8")
    return staging


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    report: str | os.PathLike | Mapping[str, Any] | None = None,
    kind: str = "auto",
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload with esarm",
    api: Any = None,
    **card_kwargs: Any,
) -> str:
    """Upload a saved model / processor folder to ``repo_id`` with its model card; returns the repository URL.

    ``api`` is a ``huggingface_hub.HfApi`` (default: a new one with ``token``); the repository is created if
    needed. Nothing in ``folder`` is modified: the upload is staged in a temporary folder.
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="esarm-push-") as tmp:
        staged = prepare_upload_folder(folder, Path(tmp) / "upload", repo_id, report=report, kind=kind, **card_kwargs)
        url = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(staged), commit_message=commit_message)
    logger.info("pushed %s to %s", folder, repo_id)
    return str(url) if url is not None else f"https://huggingface.co/{repo_id}"


def push_model_to_hub(model: Any, repo_id: str, **kwargs: Any) -> str:
    """Save an in-memory model or processor (``save_pretrained``) and :func:`push_to_hub` it."""
    with tempfile.TemporaryDirectory(prefix="esarm-save-") as tmp:
        model.save_pretrained(tmp)
        return push_to_hub(tmp, repo_id, **kwargs)
