"""Config of stage 2, the speech-to-animation model (:func:`esarm.training.sta_trainer.train_sta`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import yaml

from ..data.augmentation import AudioAugmentationConfig
from .args import ESARMTrainingArguments, Interval


@dataclass
class ESARMSTATrainingConfig(ESARMTrainingArguments):
    """Arguments of stage 2: the shared :class:`~esarm.training.args.ESARMTrainingArguments` plus the fields below.

    ``model_config`` names an ``ESARMSTAConfig`` preset; ``eval_split`` is the split of the final teacher-forced
    metrics."""

    motion_prior_name_or_path: str | None = field(
        default=None, metadata={"help": "Trained motion prior folder (stage 1 output); frozen during training."}
    )
    cross_reconstruction_weight: Annotated[float, Interval(min=0)] = field(
        default=0.5, metadata={"help": "Weight of the cross-reconstruction loss (0 disables the clip pairs)."}
    )
    cross_alignment: Literal["resample", "dtw"] = field(
        default="resample",
        metadata={"help": "Length alignment of paired clips: 'resample' (esarm.frames.resample) or 'dtw'."},
    )
    speaker_dropout: Annotated[float, Interval(min=0, max=1)] = field(
        default=0.2, metadata={"help": "Probability of training with the unknown-speaker id (held-out speakers)."}
    )
    max_seconds: Annotated[float | None, Interval(min=0, exclude_min=True)] = field(
        default=None, metadata={"help": "Crop training clips to this many seconds (only without clip pairs)."}
    )
    audio_augmentation: str | None = field(
        default=None,
        metadata={
            "help": "Augment training audio (noise, rooms, telephone band, codecs, gain, speed with the blendshape "
            "timeline resampled): null (off), 'default' (esarm.data.augmentation.AudioAugmentationConfig's "
            "defaults) or a json / yaml mapping of its fields. Seeded by the collator: runs stay reproducible."
        },
    )
    # changed TrainingArguments defaults
    output_dir: str | None = field(default=None, metadata={"help": "Where the trained STA model is saved."})
    learning_rate: float = field(default=5e-4, metadata={"help": "AdamW learning rate."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Batch size per device."})
    num_train_epochs: float = field(default=10.0, metadata={"help": "Epochs (ignored when max_steps > 0)."})
    label_names: list[str] | None = field(
        default_factory=lambda: ["blendshapes"],
        metadata={"help": "Input keys the Trainer treats as labels (so evaluation computes the loss)."},
    )
    prediction_loss_only: bool = field(default=True, metadata={"help": "Evaluation keeps losses only."})

    def __post_init__(self):
        super().__post_init__()
        # audio_augmentation is text that names a whole AudioAugmentationConfig: a bad value fails here, before
        # any data is loaded, not when the first batch is collated
        self.augmentation_config()

    def augmentation_config(self) -> AudioAugmentationConfig | None:
        """The :class:`AudioAugmentationConfig` that ``audio_augmentation`` names (``None``: no augmentation)."""
        value = self.audio_augmentation
        if value is None or value in ("", "none", "off"):
            return None
        if value == "default":
            return AudioAugmentationConfig()
        fields = value
        if isinstance(value, str):
            try:
                fields = yaml.safe_load(value)
            except yaml.YAMLError:
                fields = None
        if not isinstance(fields, dict):
            raise ValueError(
                f"audio_augmentation must be null, 'default' or a mapping of AudioAugmentationConfig fields, "
                f"got {value!r}"
            )
        try:
            return AudioAugmentationConfig(**fields)
        except TypeError as error:  # an unknown field name
            raise ValueError(f"audio_augmentation: {error} (fields: AudioAugmentationConfig's)") from None
