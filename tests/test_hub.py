"""Model cards and Hub uploads, offline (a stand-in HfApi records the calls)."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from esarm.hub import detect_kind, metrics_from_report, prepare_upload_folder, push_to_hub, render_model_card
from esarm.pipeline import custom_pipelines

REPORT = {
    "dataset": "synthetic-tiny",
    "split": "test",
    "rig": "ICT-FaceKit",
    "models": {"sta": {"lve": 3.14159, "eve": 2.5, "num_clips": 12}, "rl": {"lve": 2.9, "eve": 2.25}},
}


class FakeHfApi:
    """Records create_repo / upload_folder and snapshots the uploaded folder's files at call time."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, bytes] = {}

    def create_repo(self, repo_id, repo_type=None, private=False, exist_ok=False):
        self.calls.append(
            ("create_repo", dict(repo_id=repo_id, repo_type=repo_type, private=private, exist_ok=exist_ok))
        )
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, repo_id, folder_path, repo_type=None, commit_message=None):
        from pathlib import Path

        root = Path(folder_path)
        self.uploaded = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        self.calls.append(("upload_folder", dict(repo_id=repo_id, repo_type=repo_type, commit_message=commit_message)))


@pytest.fixture
def sta_folder(tmp_path):
    folder = tmp_path / "sta"
    folder.mkdir()
    config = {
        "model_type": "esarm_sta", "hidden_size": 32, "num_hidden_layers": 2, "num_speakers": 4,
        "audio_encoder_config": {"model_type": "wavlm", "num_hidden_layers": 2},
        "motion_prior_config": {"num_groups": 3, "codebook_size": 64, "frames_per_token": 2, "fps": 30.0},
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"x")
    (folder / "training_args.bin").write_bytes(b"x")
    (folder / "esarm_stage_done.json").write_text("{}")
    (folder / "metrics.json").write_text("{}")
    (folder / "trainer_state.json").write_text("{}")
    return folder


def test_card_has_every_section_and_the_metrics_table(sta_folder):
    card = render_model_card(
        "sta", "me/esarm-sta", config=json.loads((sta_folder / "config.json").read_text()), report=REPORT
    )
    assert card.startswith("---\n") and "\nlibrary_name: transformers\nlicense: apache-2.0\n" in card
    for heading in (
        "## Intended use",
        "## How to use",
        "## Training data",
        "## Evaluation",
        "## Limitations",
        "## Licence",
    ):
        assert heading in card
    assert 'from_pretrained("me/esarm-sta", trust_remote_code=True)' in card and "esarm animate speech.wav --model me/esarm-sta" in card
    assert "| model | lve | eve | num_clips |" in card
    assert "| sta | 3.14 | 2.50 | 12 |" in card and "| rl | 2.90 | 2.25 | – |" in card
    assert "3 face-region codebooks × 64 codes" in card
    assert "RL fine-tuned" not in card


def test_each_kind_renders(sta_folder):
    config = {
        "num_groups": 3,
        "codebook_size": 64,
        "frames_per_token": 2,
        "fps": 30,
        "gamma": 0.99,
        "speakers": ["M003"],
    }
    for kind in ("sta", "rl", "motion_prior", "reward", "processor"):
        card = render_model_card(kind, "me/x", config=config)
        assert "me/x" in card and "{{" not in card and "## Licence" in card
    assert "reinforcement-learning" in render_model_card("rl", "me/x", config=config)
    assert "No evaluation report" in render_model_card("reward", "me/x", config=config)
    with pytest.raises(ValueError, match="kind must be one of"):
        render_model_card("vocoder", "me/x")


def test_metrics_from_report():
    table = metrics_from_report(REPORT)
    assert table["columns"] == ["lve", "eve", "num_clips"] and [r["name"] for r in table["rows"]] == ["sta", "rl"]
    assert metrics_from_report(None) is None and metrics_from_report({"models": {}}) is None


def test_detect_kind(tmp_path, sta_folder):
    assert detect_kind(sta_folder) == "sta"
    (sta_folder / "rl_config.json").write_text("{}")
    assert detect_kind(sta_folder) == "rl"
    for model_type, kind in (("esarm_motion_prior", "motion_prior"), ("esarm_reward", "reward")):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
        assert detect_kind(folder) == kind
    processor = tmp_path / "processor"
    processor.mkdir()
    (processor / "processor_config.json").write_text(json.dumps({"speakers": ["a"], "fps": 30}))
    assert detect_kind(processor) == "processor"
    with pytest.raises(ValueError, match="not a saved esarm"):
        detect_kind(tmp_path / "nothing")


def test_upload_folder_contents(tmp_path, sta_folder):
    report_path = tmp_path / "report.json"
    report_path.write_text(json.dumps(REPORT))
    staged = prepare_upload_folder(sta_folder, tmp_path / "staged", "me/esarm-sta", report=report_path)
    files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
    # the pipeline applies the CPU inference levers; the processor registers itself for the two configs that hear audio
    code = {"audio.py", "blendshapes.py", "labels.py", "pipeline.py", "processing_esarm.py", "streaming.py",
            "inference.py", "speech_encoder.py", "frames.py", "configuration_esarm.py", "phonetic.py"}  # fmt: skip
    assert set(files) == {"README.md", "config.json", "eval_results.json", "model.safetensors"} | code
    # a folder saved before models carried their pipeline gets it in the upload
    assert json.loads((staged / "config.json").read_text())["custom_pipelines"] == custom_pipelines()
    assert json.loads((staged / "eval_results.json").read_text()) == REPORT
    assert (sta_folder / "checkpoint-10").exists()  # the source folder is untouched
    with pytest.raises(ValueError, match="user/name"):
        prepare_upload_folder(sta_folder, tmp_path / "s2", "no-namespace")


def test_push_to_hub_against_a_stand_in_api(sta_folder):
    api = FakeHfApi()
    url = push_to_hub(sta_folder, "me/esarm-sta", report=REPORT, private=True, api=api, commit_message="v1")
    assert url == "https://huggingface.co/me/esarm-sta"
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][1] == {"repo_id": "me/esarm-sta", "repo_type": "model", "private": True, "exist_ok": True}
    assert api.calls[1][1]["commit_message"] == "v1"
    assert {"README.md", "config.json", "eval_results.json", "model.safetensors", "pipeline.py"} <= set(api.uploaded)
    assert not {"esarm_stage_done.json", "metrics.json", "trainer_state.json", "training_args.bin"} & set(api.uploaded)
    assert b"| sta | 3.14 | 2.50 | 12 |" in api.uploaded["README.md"]


def test_push_a_real_tiny_motion_prior(tmp_path, tiny_motion_prior_config):
    from esarm import ESARMMotionPrior
    from esarm.hub import push_model_to_hub

    api = FakeHfApi()
    push_model_to_hub(ESARMMotionPrior(tiny_motion_prior_config), "me/prior", api=api)
    assert "config.json" in api.uploaded and "model.safetensors" in api.uploaded
    card = api.uploaded["README.md"].decode()
    assert "# ESARM motion prior" in card
    parameters = card.split("Parameters: ")[1].split(".\n")[0]
    assert parameters != "unknown" and parameters[0].isdigit()
    assert json.loads(api.uploaded["config.json"])["model_type"] == "esarm_motion_prior"


def test_card_metadata_through_model_card_data(sta_folder):
    """library_name, pipeline_tag, base_model, datasets, license, tags and a model-index from the report."""
    config = json.loads((sta_folder / "config.json").read_text())
    config["audio_encoder_name_or_path"] = "microsoft/wavlm-base-plus"
    card = ModelCard(render_model_card("sta", "me/esarm-sta", config=config, report=REPORT,
                                       datasets=["me/mead-prepared"], license="cc-by-nc-4.0"))  # fmt: skip
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "other"
    assert data.base_model == "microsoft/wavlm-base-plus" and data.datasets == ["me/mead-prepared"]
    assert data.license == "cc-by-nc-4.0" and {"speech-to-animation", "esarm", "custom_code"} <= set(data.tags)
    results = {r.metric_type: r.metric_value for r in data.eval_results}
    assert results == {"lve": 3.14159, "eve": 2.5, "num_clips": 12}  # the "sta" row of the report
    assert {r.dataset_name for r in data.eval_results} == {"synthetic-tiny"} and data.model_name == "esarm-sta"
    assert "trust_remote_code=True" in card.text and 'pipeline("speech-to-animation"' in card.text
    rl = ModelCard(render_model_card("rl", "me/esarm-rl", config=config, report=REPORT, report_model="rl")).data
    assert {r.metric_type: r.metric_value for r in rl.eval_results} == {"lve": 2.9, "eve": 2.25}
    assert rl.base_model is None and "reinforcement-learning" in rl.tags
    with pytest.raises(ValueError, match=r"report_model must name a model of the report \['sta', 'rl'\], got 'x'"):
        render_model_card("sta", "me/esarm-sta", config=config, report=REPORT, report_model="x")
    assert ModelCard(render_model_card("reward", "me/r", config=config, report=REPORT)).data.eval_results is None
