"""benchmarks/app.py's measurements on a random-init tiny STA model: 1 s of speech, one run, without the ``esarm app``
subprocess and the browser (tests/test_app.py drives those)."""

from __future__ import annotations

import json

import pytest

from esarm import ESARMProcessor, ESARMSTAConfig, ESARMSTAForGeneration
from esarm.inference import cpu_name


def test_app_benchmark_times_model_files_and_video_and_names_the_cpu(tmp_path, repo_script):
    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval()
    model.save_pretrained(tmp_path / "sta")
    ESARMProcessor(fps=model.config.fps).save_pretrained(tmp_path / "sta")
    benchmark = repo_script("benchmarks/app.py")
    assert benchmark.VIDEO_HEIGHT == 320  # the app's default video height
    assert len(benchmark.speech(7.0)) == 7 * benchmark.RATE  # the 4.7 s sample sentence, looped

    numbers = benchmark.run(str(tmp_path / "sta"), 1.0, 1, tmp_path, app_start=False, video_height=96)
    animation = numbers["animation"]
    assert animation["frames"] == 30 and len(animation["model"]) == len(animation["video"]) == 1
    assert animation["video_size"][1] == 96 and all(animation[k][0] > 0 for k in ("model", "files", "video"))
    text = benchmark.table(numbers)
    assert f"CPU: {cpu_name()}," in text and "torch threads 1" in text and "load average" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    # no app-start row (no subprocess) and no browser rows; 62x96: the face's aspect at 96 pixels high
    starts = ["| step | seconds | min - max of 1 |", "| model, 1 s of audio (`auto`; real-time factor ",
              "| GLB + CSV + JSON | ", "| MP4, 30 frames at 62x96 | "]  # fmt: skip
    assert len(rows) == len(starts) and all(row.startswith(start) for row, start in zip(rows, starts)), rows
    json.dumps(numbers)  # what --json writes


def test_app_benchmark_refuses_browser_without_the_app(repo_script):
    with pytest.raises(SystemExit):
        repo_script("benchmarks/app.py").main(["--browser", "--no-app-start"])
