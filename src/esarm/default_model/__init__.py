"""esarm's default model: what ``esarm animate``, ``esarm app``, ``pipeline("speech-to-animation")`` and
:class:`~esarm.streaming.StreamingAnimator` animate with when no model is given, offline and with nothing to
download.

It is the STA model of the ``small`` pipeline (``configs/small.yaml``: motion prior and STA trained on the
synthetic corpus), shipped as package data in ``sta/`` with its motion prior, processor and generation config,
float16 weights loaded as float32. Its card is ``sta/README.md``; ``scripts/build_default_model.py`` rebuilds it.
:data:`SAMPLE_SPEECH` is a short English sentence spoken by eSpeak NG to try it on::

    esarm animate --sample --out a.csv
    python -m esarm.default_model        # where the model and the sample are
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL_DIR", "SAMPLE_SPEECH", "default_model_path", "describe_default_model", "load_default_model"]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "sta"
SAMPLE_SPEECH = Path(__file__).resolve().parent / "sample_speech.wav"
# Written by scripts/build_default_model.py beside the weights: the config it was trained from and its sizes.
BUILD_INFO_FILE = "esarm_default_model.json"


def default_model_path() -> Path:
    """The folder of the default model. Raises ``FileNotFoundError`` when this installation lacks it."""
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"esarm's default model is missing from this installation ({DEFAULT_MODEL_DIR}): rebuild it with "
            "python scripts/build_default_model.py, or give a model (--model)"
        )
    return DEFAULT_MODEL_DIR


def build_info() -> dict[str, Any]:
    """What ``scripts/build_default_model.py`` recorded: ``config``, ``seed``, ``num_parameters``, ``weights_dtype``,
    ``weights_sha256``, ``languages`` (of the training corpus)."""
    return json.loads((default_model_path() / BUILD_INFO_FILE).read_text(encoding="utf-8"))


def describe_default_model() -> str:
    """One line naming the default model, for logs and the command line."""
    info = build_info()
    languages = info.get("languages", ["en"])  # a build before the field: the English small corpus
    speech = "synthetic English speech" if languages == ["en"] else f"synthetic speech in {len(languages)} languages"
    return (
        f"esarm's default model ('{info['config']}' STA, {info['num_parameters'] / 1e6:.1f} M parameters, trained on "
        f"{speech}) in {DEFAULT_MODEL_DIR}"
    )


def load_default_model(device: str | None = None) -> tuple[Any, Any]:
    """The default ``ESARMSTAForGeneration`` (float32, eval mode, on ``device``: default cpu) and its
    ``ESARMProcessor``. Reads only the package's files: works offline, with an empty Hugging Face cache."""
    import torch

    from ..modeling_sta import ESARMSTAForGeneration
    from ..processing_esarm import ESARMProcessor

    path = default_model_path()
    logger.info("no model given: using %s", describe_default_model())
    model = ESARMSTAForGeneration.from_pretrained(path, dtype=torch.float32).eval()
    if device is not None:
        model = model.to(device)
    return model, ESARMProcessor.from_pretrained(path)
