"""Expression classifier: recognises the emotion of a blendshape clip from statistics of its upper face.

Trained on ground-truth clips of a dataset split (rows with ``blendshapes`` ``[T, 52]`` and ``emotion`` names from
``esarm.blendshapes.EMOTIONS``), it scores generated animations: the emotion-recognition accuracy of a model is the
share of its clips this classifier labels with the intended emotion. It looks at the upper face only (eyes,
brows, cheeks and nose by default: ``esarm.blendshapes.FACE_REGIONS`` "eyes" + "brows"), so lip motion, which
follows the words, cannot carry the decision.

Features per clip (per selected coefficient): mean, standard deviation, 10th / 90th percentile over time and mean
absolute frame-to-frame change, standardised with the training set's statistics; a small MLP on top.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..blendshapes import EMOTIONS, FACE_REGIONS, region_indices
from ..utils import atomic_write, atomic_write_text

logger = logging.getLogger(__name__)

CONFIG_NAME = "expression_classifier.json"
WEIGHTS_NAME = "expression_classifier.safetensors"


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """The model is tiny: extra intra-op threads only add synchronisation (tens of times slower on a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def clip_features(blendshapes: np.ndarray, indices: Sequence[int]) -> np.ndarray:
    """Per-clip statistics of the selected coefficients, ``[5 * len(indices)]`` float32."""
    clip = np.asarray(blendshapes, dtype=np.float64)[:, list(indices)]
    if clip.ndim != 2 or len(clip) == 0:
        raise ValueError(f"blendshapes must have shape [frames >= 1, 52], got shape {np.shape(blendshapes)}")
    if not np.all(np.isfinite(clip)):
        raise ValueError("blendshapes must be finite, got NaN/inf values")
    velocity = np.abs(np.diff(clip, axis=0)).mean(0) if len(clip) > 1 else np.zeros(clip.shape[1])
    low, high = np.percentile(clip, [10, 90], axis=0)
    return np.concatenate([clip.mean(0), clip.std(0), low, high, velocity]).astype(np.float32)


class ExpressionClassifier:
    """Emotion classifier over per-clip upper-face blendshape statistics.

    Args:
        regions: face regions (keys of ``esarm.blendshapes.FACE_REGIONS``) whose coefficients it reads.
        hidden_size: width of the MLP's hidden layer.
        dropout: dropout before the output layer during training.
        seed: seed of the weight initialisation and of training's shuffling.
    """

    def __init__(
        self,
        regions: Sequence[str] = ("eyes", "brows"),
        hidden_size: int = 64,
        dropout: float = 0.1,
        seed: int = 0,
    ) -> None:
        unknown = [r for r in regions if r not in FACE_REGIONS]
        if not regions or unknown:
            raise ValueError(f"regions must be a non-empty subset of {sorted(FACE_REGIONS)}, got {list(regions)}")
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be a positive integer, got {hidden_size}")
        self.regions = tuple(regions)
        self.hidden_size = int(hidden_size)
        self.dropout = float(dropout)
        self.seed = int(seed)
        self.indices = sorted(i for r in self.regions for i in region_indices(r))
        self.num_features = 5 * len(self.indices)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)
        self.model = nn.Sequential(
            nn.Linear(self.num_features, self.hidden_size),
            nn.GELU(),
            nn.Dropout(self.dropout),
            nn.Linear(self.hidden_size, len(EMOTIONS)),
        )
        torch.random.set_rng_state(generator_state)
        self.feature_mean = np.zeros(self.num_features, dtype=np.float32)
        self.feature_std = np.ones(self.num_features, dtype=np.float32)
        self.is_fitted = False

    # ---- data ----
    def features(self, clips: Iterable[Any]) -> np.ndarray:
        """``[N, num_features]`` standardised features of ``[T, 52]`` clips."""
        rows = [clip_features(np.asarray(c), self.indices) for c in clips]
        if not rows:
            raise ValueError("clips must hold at least one [frames, 52] clip, got none")
        return (np.stack(rows) - self.feature_mean) / self.feature_std

    @staticmethod
    def _rows(dataset: Any, labels: Sequence[str | int] | None = None) -> tuple[list[np.ndarray], list[int]]:
        """Clips and emotion ids from rows with ``blendshapes`` / ``emotion``, or from clips + ``labels``."""
        if labels is not None:
            pairs = list(zip(dataset, labels, strict=True))
        else:
            if hasattr(dataset, "with_format"):
                dataset = dataset.with_format("numpy", columns=["blendshapes", "emotion"])
            pairs = [(row["blendshapes"], row["emotion"]) for row in dataset]
        clips, ids = [], []
        for clip, emotion in pairs:
            if isinstance(emotion, np.ndarray):
                emotion = emotion.item()
            emotion = EMOTIONS[int(emotion)] if isinstance(emotion, (int, np.integer)) else str(emotion)
            if emotion not in EMOTIONS:
                raise ValueError(f"emotion must be one of {list(EMOTIONS)}, got {emotion!r}")
            clips.append(np.asarray(clip, dtype=np.float32))
            ids.append(EMOTIONS.index(emotion))
        return clips, ids

    # ---- training ----
    def fit(
        self,
        dataset: Any,
        labels: Sequence[str | int] | None = None,
        epochs: int = 300,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-3,
        batch_size: int = 256,
    ) -> ExpressionClassifier:
        """Train on ground-truth clips. Returns ``self``.

        Args:
            dataset: a ``datasets.Dataset`` split or an iterable of rows with ``blendshapes`` ``[T, 52]`` and
                ``emotion`` (name or id); or, with ``labels``, an iterable of ``[T, 52]`` clips.
            labels: emotion names or ids of the clips when ``dataset`` holds bare clips.
        """
        clips, labels = self._rows(dataset, labels)
        if len(clips) < 2:
            raise ValueError(f"dataset must hold at least 2 clips to train on, got {len(clips)}")
        raw = np.stack([clip_features(c, self.indices) for c in clips])
        self.feature_mean = raw.mean(0).astype(np.float32)
        self.feature_std = (raw.std(0) + 1e-6).astype(np.float32)
        inputs = torch.from_numpy((raw - self.feature_mean) / self.feature_std).float()
        targets = torch.tensor(labels, dtype=torch.long)
        # Balance emotions: MEAD has more neutral clips per speaker than any other emotion.
        counts = torch.bincount(targets, minlength=len(EMOTIONS)).float()
        weights = torch.where(counts > 0, counts.sum() / (counts.clamp(min=1) * (counts > 0).sum()), 0.0)
        loss_fn = nn.CrossEntropyLoss(weight=weights)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=learning_rate, weight_decay=weight_decay)
        generator = torch.Generator().manual_seed(self.seed)
        self.model.train()
        with _one_thread():
            for _ in range(epochs):
                order = torch.randperm(len(inputs), generator=generator)
                for start in range(0, len(inputs), batch_size):
                    batch = order[start : start + batch_size]
                    optimizer.zero_grad()
                    loss = loss_fn(self.model(inputs[batch]), targets[batch])
                    loss.backward()
                    optimizer.step()
        self.model.eval()
        self.is_fitted = True
        logger.info("ExpressionClassifier trained on %d clips, final batch loss %.4f", len(clips), loss.item())
        return self

    # ---- inference ----
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(
                "ExpressionClassifier must be trained with fit() or loaded with load() before predicting"
            )

    @torch.no_grad()
    def predict_proba(self, clips: Iterable[Any]) -> np.ndarray:
        """``[N, 8]`` emotion probabilities (``EMOTIONS`` order) of ``[T, 52]`` clips."""
        self._check_fitted()
        inputs = torch.from_numpy(self.features(clips)).float()
        self.model.eval()
        with _one_thread():
            return torch.softmax(self.model(inputs), dim=-1).numpy()

    def predict_ids(self, clips: Iterable[Any]) -> np.ndarray:
        """``[N]`` emotion ids of ``[T, 52]`` clips."""
        return self.predict_proba(clips).argmax(-1)

    def predict(self, clips: Iterable[Any]) -> list[str]:
        """Emotion names of ``[T, 52]`` clips (a list of arrays, or a ``[N, T, 52]`` array)."""
        return [EMOTIONS[i] for i in self.predict_ids(clips)]

    def score(self, dataset: Any, labels: Sequence[str | int] | None = None) -> float:
        """Accuracy on rows with ``blendshapes`` and ``emotion`` (or on clips + ``labels``)."""
        clips, labels = self._rows(dataset, labels)
        return float(np.mean(self.predict_ids(clips) == np.array(labels)))

    # ---- persistence ----
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``expression_classifier.json`` + ``expression_classifier.safetensors`` into ``directory``."""
        from safetensors.torch import save_file

        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "regions": list(self.regions),
            "hidden_size": self.hidden_size,
            "dropout": self.dropout,
            "seed": self.seed,
            "emotions": list(EMOTIONS),
            "feature_mean": self.feature_mean.tolist(),
            "feature_std": self.feature_std.tolist(),
        }
        tensors = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp))
        atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ExpressionClassifier:
        """Load a classifier written by :meth:`save`."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"no expression classifier in {directory} (expected {CONFIG_NAME})")
        config = json.loads(config_path.read_text())
        if config.get("emotions", list(EMOTIONS)) != list(EMOTIONS):
            raise ValueError(
                f"classifier in {directory} was trained on emotions {config['emotions']}, expected {EMOTIONS}"
            )
        classifier = cls(
            regions=config["regions"], hidden_size=config["hidden_size"], dropout=config["dropout"], seed=config["seed"]
        )
        classifier.model.load_state_dict(load_file(str(directory / WEIGHTS_NAME)))
        classifier.model.eval()
        classifier.feature_mean = np.asarray(config["feature_mean"], dtype=np.float32)
        classifier.feature_std = np.asarray(config["feature_std"], dtype=np.float32)
        classifier.is_fitted = True
        return classifier
