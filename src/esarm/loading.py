"""Loading a saved model for inference: checks of a model folder, the device, and the STA model with its processor.

Shared by the ``esarm`` command (:mod:`esarm.commands`) and the app (:mod:`esarm.app`). Bad input raises
``ValueError`` naming the argument (``--model`` by default), which the command turns into one line and exit status 2.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors import SafetensorError

from esarm.default_model import load_default_model
from esarm.modeling_sta import ESARMSTAForGeneration
from esarm.processing_esarm import ESARMProcessor
from esarm.utils import check_safetensors

logger = logging.getLogger(__name__)

__all__ = ["MODEL_KINDS", "check_model_folder", "load_model_and_processor", "resolve_device"]

MODEL_KINDS = {
    "esarm_sta": "an STA model (train_sta / train_rl output)",
    "esarm_motion_prior": "a motion prior",
    "esarm_reward": "a reward model",
}


def check_model_folder(path: str | os.PathLike, model_type: str, argument: str) -> None:
    """For a local folder: config.json is readable and names ``model_type``, and model.safetensors is whole. A Hub
    id (no such local path) is left to ``from_pretrained``. Raises ``ValueError`` naming ``argument``."""
    folder = Path(path).expanduser()
    if not folder.exists():
        if Path(path).is_absolute() or str(path).startswith((".", "~")) or str(path).count("/") != 1:
            raise ValueError(f"{argument} must be a saved model folder or a Hub id (user/name), got {str(path)!r}")
        return
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise ValueError(f"{argument} {folder} has no config.json: not a saved model folder")
    try:
        found = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as error:
        raise ValueError(
            f"{argument} {folder}: config.json must be a JSON object, got an unreadable file ({error})"
        ) from None
    if found != model_type:
        given = MODEL_KINDS.get(found, f"model_type {found!r}")
        raise ValueError(
            f"{argument} must be {MODEL_KINDS[model_type]} (config.json model_type {model_type!r}), got {given} in "
            f"{folder}"
        )
    weights = folder / "model.safetensors"
    if weights.is_file():
        try:
            check_safetensors(weights)
        except ValueError as error:
            raise ValueError(f"{argument}: {error}") from None


def resolve_device(device: str | None, argument: str = "--device") -> str:
    """``device`` checked against this machine (``None``: cuda when available, else cpu)."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise ValueError(f"{argument} must be a torch device such as cpu, cuda or cuda:1, got {device!r}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{argument} {device} needs a CUDA GPU and a CUDA build of torch; this machine has none (use {argument} cpu)"
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{argument} {device} needs Apple's MPS backend, which is not available here")
    return device


def load_model_and_processor(
    model_name_or_path: str | None, device: str | None = None, argument: str = "--model"
) -> tuple[ESARMSTAForGeneration, ESARMProcessor | None]:
    """An ``ESARMSTAForGeneration`` (folder or Hub id) on ``device``, in eval mode, and its processor (``None`` when
    the folder has none: the pipeline then uses the default feature extraction). ``None``: esarm's default model
    (:mod:`esarm.default_model`, shipped in the package)."""
    if model_name_or_path is None:
        return load_default_model(resolve_device(device, argument="--device"))
    check_model_folder(model_name_or_path, "esarm_sta", argument)
    device = resolve_device(device)
    path = Path(model_name_or_path).expanduser()
    source = str(path) if path.exists() else model_name_or_path
    try:
        model = ESARMSTAForGeneration.from_pretrained(source)
    except (OSError, SafetensorError) as error:
        raise OSError(f"could not load the model {model_name_or_path!r}: {error}") from None
    model = model.to(device).eval()
    processor = None
    try:
        processor = ESARMProcessor.from_pretrained(source)
    except (OSError, ValueError) as error:  # a folder saved without processor files is fine
        logger.info("no processor with the model (%s); using the defaults", error)
    return model, processor
