"""The synthetic emotional talking-face corpus: speech from eSpeak NG (and Festival where installed), ground-truth
ARKit blendshapes from the phoneme timings, emotion styles per speaker.

- :mod:`~esarm.data.synthetic.config`: :class:`SyntheticCorpusConfig`, its presets, speakers, sentences, splits.
- :mod:`~esarm.data.synthetic.corpus`: generating clips and the corpus, saving it with its dataset card.
- :mod:`~esarm.data.synthetic.expressions`: the generative model of the face (emotion profiles, speaker styles).
- :mod:`~esarm.data.synthetic.visemes`: phonemes -> visemes -> mouth blendshapes, with coarticulation.
- speech engines: :mod:`~esarm.data.synthetic.tts` (eSpeak NG), :mod:`~esarm.data.synthetic.festival`,
  :mod:`~esarm.data.synthetic.flite` (CMU Flite, held-out test voices); voices and sentences in
  :mod:`~esarm.data.synthetic.voices` and :mod:`~esarm.data.synthetic.sentences`.
"""

from .config import (
    CORPUS_PRESETS,
    ENGINES,
    SENTENCES,
    SyntheticCorpusConfig,
    available_engines,
    corpus_sentences,
    corpus_speakers,
    speaker_sentences,
    speaker_splits,
)
from .corpus import (
    build_synthetic_corpus,
    festival_request,
    generate_clip,
    generate_synthetic_corpus,
    plot_example,
)
from .expressions import (
    EMOTION_PROFILES,
    INTENSITY_SCALE,
    VOICES,
    EmotionProfile,
    SpeakerStyle,
    animate,
    loudness_envelope,
    make_speakers,
)

__all__ = [
    "CORPUS_PRESETS",
    "EMOTION_PROFILES",
    "ENGINES",
    "INTENSITY_SCALE",
    "SENTENCES",
    "VOICES",
    "EmotionProfile",
    "SpeakerStyle",
    "SyntheticCorpusConfig",
    "animate",
    "available_engines",
    "build_synthetic_corpus",
    "corpus_sentences",
    "corpus_speakers",
    "festival_request",
    "generate_clip",
    "generate_synthetic_corpus",
    "loudness_envelope",
    "make_speakers",
    "plot_example",
    "speaker_sentences",
    "speaker_splits",
]
