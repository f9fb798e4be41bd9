"""Rebuild the model embedded in esarm (src/esarm/default_model/sta/) and its sample speech file.

    python scripts/build_default_model.py                                   # configs/small.yaml, runs/default_model
    python scripts/build_default_model.py --config configs/tiny.yaml --work-dir runs/default_tiny
    python scripts/build_default_model.py --pack-only                       # repack a finished run

Runs the stages of the pipeline that the STA model needs (corpus, motion prior, STA) and its evaluation, with the
pipeline's own runner (esarm.training.runner.run_pipeline: the config's seed, finished stages resumed), then packs
<work-dir>/sta: float16 weights (loaded back as float32), its motion prior, processor and generation config, the
model card (README.md: data, sizes, the evaluation's tables on every held-out set, limits) and the licence. The same
weights give the same bytes: safetensors orders its tensors, the JSON files are written with sorted keys, and the
folder holds no code copies or timestamps. The sample (sample_speech.wav) is one sentence spoken by eSpeak NG. It prints
the build info and the share of the sample's motion tokens the float16 pack generates as the trained model does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch
from esarm.data.tts import get_synthesizer

from esarm.audio import resample
from esarm.default_model import BUILD_INFO_FILE, DEFAULT_MODEL_DIR, SAMPLE_SPEECH
from esarm.modeling_sta import ESARMSTAForGeneration
from esarm.processing_esarm import ESARMProcessor
from esarm.training.args import load_config_file
from esarm.training.runner import apply_overrides, run_pipeline
from esarm.utils import atomic_write_bytes, staged_folder

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["corpus", "motion_prior", "sta", "evaluation"]
MAX_BYTES = 12 * 1024 * 1024
# Files of a save_pretrained STA folder that the package keeps; the code copies (*.py) and the config's pointers to
# them stay out: esarm itself is installed wherever this folder is.
KEPT_FILES = ("config.json", "generation_config.json", "model.safetensors", "processor_config.json",
              "preprocessor_config.json")  # fmt: skip
REMOTE_CODE_KEYS = ("auto_map", "custom_pipelines")
SAMPLE_TEXT = "Hello! I can turn your voice into a moving face. Try me with your own recording."
SAMPLE_VOICE = "en-us+m3"  # an eSpeak NG voice; 16 kHz mono PCM, about 5 s
LICENCE = ROOT / "src" / "esarm" / "default_model" / "LICENSE"

logger = logging.getLogger("build_default_model")


def _json_bytes(values: dict) -> bytes:
    return (json.dumps(values, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_sample(path: Path = SAMPLE_SPEECH) -> Path:
    """The sample: SAMPLE_TEXT spoken by eSpeak NG (seeded), resampled to 16 kHz, 16-bit PCM WAV."""
    utterance = get_synthesizer().synthesize(SAMPLE_TEXT, voice=SAMPLE_VOICE, seed=0)
    audio = resample(utterance.audio, utterance.sampling_rate, 16000)
    audio = (0.9 * audio / max(float(np.abs(audio).max()), 1e-6)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        soundfile.write(Path(tmp) / "sample.wav", audio, 16000, subtype="PCM_16")
        return atomic_write_bytes(path, (Path(tmp) / "sample.wav").read_bytes())


ENGINES = {"espeak": "eSpeak NG", "festival": "Festival", "flite": "CMU Flite"}


def _corpus_description(corpus: dict) -> str:
    """Who speaks the corpus, in which languages (from its ``synthetic_config.json``, in ``corpus["synthetic"]``)."""
    synthetic = corpus.get("synthetic") or {}
    engines = " and ".join(ENGINES.get(e, e) for e in synthetic.get("engines", ["espeak"]))
    languages = list(synthetic.get("languages") or ["en"])
    held_out = list(synthetic.get("validation_languages") or []) + list(synthetic.get("test_languages") or [])
    if languages == ["en"] and not held_out:
        return f"English sentences spoken by {engines} voices"
    text = f"sentences in {len(languages)} languages ({', '.join(languages)}) spoken by {engines} voices"
    return text + (f"; {', '.join(held_out)} held out for validation and test" if held_out else "")


def _language_limit(corpus: dict) -> str:
    languages = list((corpus.get("synthetic") or {}).get("languages") or ["en"])
    if languages == ["en"]:
        return "English-centred: English sentences and English synthetic voices; other languages get English mouth shapes."
    return (f"Trained on {len(languages)} languages' synthetic voices (eSpeak NG's phoneme timings, one viseme model for "
            "all of them); languages beyond them are measured only on the held-out ones.")  # fmt: skip


def model_card(info: dict, results_md: str, corpus: dict, config_name: str) -> str:
    """The card: what the model is, its data, sizes, the pipeline's evaluation tables, limits, licence, rebuild."""
    return f"""---
library_name: transformers
license: apache-2.0
tags: [speech-to-animation, facial-animation, blendshapes, arkit, esarm]
---
# esarm's default model: the `{config_name}` STA model

The speech-to-animation model that esarm uses when no model is given (`esarm animate`, `esarm app`,
`pipeline("speech-to-animation")`, `StreamingAnimator`). It turns speech (any rate, resampled to 16 kHz mono)
into the 52 ARKit blendshapes at 30 fps, conditioned on an emotion (MEAD's eight), an intensity (1-3) and a
speaker (its {info["num_speakers"]} training voices, or the unknown speaker: the default).

| | |
|---|---|
| pipeline config | `configs/{config_name}.yaml`, seed {info["seed"]}: corpus, motion prior and STA stages (no RL) |
| parameters | {info["num_parameters"]:,} (speech front end, STA transformer and the motion prior that decodes) |
| weights | float16 safetensors, {info["weights_bytes"] / 1e6:.1f} MB, loaded as float32; sha256 {info["weights_sha256"][:16]}... |
| audio front end | {info["audio_front_end"]} |

```bash
esarm animate --example --out a.csv              # the shipped sample sentence
esarm animate speech.wav --emotion happy --out a.mp4
```

## Training data

The synthetic corpus of esarm (the `corpus` section of `configs/{config_name}.yaml`): {_corpus_description(corpus)},
with blendshapes generated from the phoneme timings (visemes) and per-emotion facial styles.
{corpus.get("num_train", "?")} training, {corpus.get("num_validation", "?")} validation and
{corpus.get("num_test", "?")} test clips; the three splits have different voices. No recording of a real face or a
real voice was used.

## Evaluation

The pipeline's evaluation (`esarm.evaluation.run.evaluate_pipeline`) as it wrote `evaluation/results.md`: the test
split (voices the model never heard) and the fixed held-out lip-sync sets (unseen eSpeak NG voices and sentences;
CMU Flite, a synthesiser family absent from training). LVE / EVE are in mm on the ICT-FaceKit rig embedded in esarm.

{results_md.strip()}

## Limits

- Synthetic training data only: the voices are speech synthesisers and the faces are generated from rules, so real
  recordings (noise, reverberation, fast or emotional speech) animate less well than these numbers suggest.
- {_language_limit(corpus)}
- The emotion is the label you give (`--emotion`, default neutral); the emotion heard in the audio (`auto`)
  misfires on unseen voices.
- Blendshapes only: no head pose, no eye-gaze rotation.

## Licence

Apache-2.0, as esarm (LICENSE beside this card). The training speech was generated by eSpeak NG and Festival
(whose licences cover the programs, not the speech they produce).

## Rebuild

```bash
python scripts/build_default_model.py --config configs/{config_name}.yaml
```
"""


def pack(sta_dir: Path, run_dir: Path, output: Path, config: dict, config_name: str) -> dict:
    """Pack the STA folder ``sta_dir`` into ``output`` (replaced atomically); returns the build info."""
    model = ESARMSTAForGeneration.from_pretrained(sta_dir, dtype=torch.float32).eval()
    processor = ESARMProcessor.from_pretrained(sta_dir)
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp)
        model.to(torch.float16).save_pretrained(saved)
        processor.save_pretrained(saved)
        files = {name: (saved / name).read_bytes() for name in KEPT_FILES if (saved / name).is_file()}
    model_config = json.loads(files["config.json"])
    for key in REMOTE_CODE_KEYS:
        model_config.pop(key, None)
    model_config["dtype"] = "float32"  # float16 on disk, float32 in memory (CPU kernels, the streaming path)
    files["config.json"] = _json_bytes(model_config)
    for name in ("generation_config.json", "processor_config.json", "preprocessor_config.json"):
        if name in files:
            files[name] = _json_bytes(json.loads(files[name]))
    weights = files["model.safetensors"]
    info = {
        "config": config_name,
        "seed": int(config.get("seed", 0)),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "num_speakers": len(processor.speakers),
        "audio_front_end": model.config.audio_front_end,
        "weights_dtype": "float16",
        "weights_bytes": len(weights),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    corpus = json.loads((run_dir / "corpus" / "esarm_stage_done.json").read_text()).get("metrics", {})
    synthetic = Path(corpus.get("dataset_name_or_path") or run_dir / "corpus") / "synthetic_config.json"
    if synthetic.is_file():
        corpus["synthetic"] = json.loads(synthetic.read_text())
    info["languages"] = list((corpus.get("synthetic") or {}).get("languages") or ["en"])
    files[BUILD_INFO_FILE] = _json_bytes(info)
    results = run_dir / "evaluation" / "results.md"
    files["README.md"] = model_card(info, results.read_text(encoding="utf-8"), corpus, config_name).encode("utf-8")
    files["LICENSE"] = LICENCE.read_bytes()
    total = sum(len(data) for data in files.values())
    if total > MAX_BYTES:
        raise ValueError(f"the default model must stay within {MAX_BYTES} bytes of package data, got {total}")
    with staged_folder(output) as staging:
        for name, data in sorted(files.items()):
            (staging / name).write_bytes(data)
    return {**info, "total_bytes": total}


@torch.no_grad()
def token_agreement(sta_dir: Path, packed_dir: Path, sample: Path) -> float:
    """Share of the motion tokens of ``sample`` that the packed (float16) model generates as the trained one does."""
    processor = ESARMProcessor.from_pretrained(packed_dir)
    inputs = processor(str(sample), emotion="neutral", return_tensors="pt")
    trained = ESARMSTAForGeneration.from_pretrained(sta_dir, dtype=torch.float32).eval().generate(**inputs)
    packed = ESARMSTAForGeneration.from_pretrained(packed_dir).eval().generate(**inputs)
    return float((trained.motion_tokens == packed.motion_tokens).float().mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "small.yaml"), help="pipeline yaml")
    parser.add_argument("--work-dir", default="runs/default_model", help="pipeline run folder (resumed)")
    parser.add_argument("--output", default=str(DEFAULT_MODEL_DIR), help="folder to pack the model into")
    parser.add_argument("--sample", default=str(SAMPLE_SPEECH), help="sample speech file to write")
    parser.add_argument("--set", nargs="+", default=[], metavar="SECTION.KEY=VALUE", help="config changes")
    parser.add_argument("--pack-only", action="store_true", help="pack a finished run without running stages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config_path, work_dir = Path(args.config), Path(args.work_dir)
    if not args.pack_only:
        run_pipeline(str(config_path), work_dir, stages=STAGES, overrides=args.set)
    config = apply_overrides(load_config_file(config_path), args.set)
    info = pack(work_dir / "sta", work_dir, Path(args.output), config, config_path.stem)
    write_sample(Path(args.sample))
    info["float16_token_agreement"] = token_agreement(work_dir / "sta", Path(args.output), Path(args.sample))
    print(json.dumps(info, indent=2))
    print(f"packed {args.output} ({info['total_bytes'] / 1e6:.1f} MB); sample {args.sample}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
