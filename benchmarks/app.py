"""Time the esarm app on CPU: start-up, the model, the GLB / CSV / JSON files, the MP4, and (``--browser``) what a
person waits for after pressing Animate.

    python benchmarks/app.py                                  # esarm's default model, 5 s of speech, 3 repeats
    python benchmarks/app.py --browser                        # also the page in headless Chromium (Selenium)
    python benchmarks/app.py --model runs/x/sta --seconds 10 --audio speech.wav --json app.json

Steps: (1) app start: ``esarm app --port P`` (a free 127.0.0.1 port) as a subprocess, from the command to the first
HTTP 200 on ``/`` (imports torch, transformers and Gradio, loads the model); (2) the model and (3) the GLB + CSV +
JSON files: ``esarm.app.AppAnimator.animate`` under emotion ``auto``, its own ``timings``, median of ``--repeats``;
(4) the MP4: ``AppAnimator.render`` at the app's default video height, median of ``--repeats``; (5) with
``--browser`` (Chromium, chromedriver and selenium): the page of the app started in (1) uploads the speech, picks
``auto`` and presses Animate; timed from the click to the 3D face loaded, to it playing (Play pressed once it has
loaded, its clock running), and to the video in the page. The speech is esarm's sample sentence
(``esarm/default_model/sample_speech.wav``, eSpeak NG) or ``--audio``, looped and cut to ``--seconds``. Steps 2-4
run in this process after the app has stopped; the table names the CPU, torch's threads and the load average at
the start and the end (the figures are wall time: a busy machine makes them longer).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import soundfile
import torch

from esarm.app import AppAnimator
from esarm.app.browser import free_port, headless_chromium, missing_browser_parts
from esarm.audio import load_audio
from esarm.default_model import SAMPLE_SPEECH
from esarm.inference import cpu_name

RATE = 16000
# What ``esarm app`` renders at unless --video-height is given (the CLI and launch_app use the same default).
VIDEO_HEIGHT = inspect.signature(AppAnimator.__init__).parameters["video_height"].default


def speech(seconds: float, audio: str | os.PathLike | None = None) -> np.ndarray:
    """``seconds`` of mono 16 kHz speech: ``audio`` (default: esarm's sample sentence) looped and cut to length."""
    samples = load_audio(str(audio or SAMPLE_SPEECH), target_rate=RATE)
    return np.resize(samples, int(round(seconds * RATE))).astype(np.float32)


def esarm_command() -> list[str]:
    """The ``esarm`` console script of this Python (its venv's ``bin``), else the one on PATH, else ``python -c``."""
    beside = Path(sys.executable).with_name("esarm")
    found = str(beside) if beside.exists() else shutil.which("esarm")
    return [found] if found else [sys.executable, "-c", "import sys; from esarm.cli import main; sys.exit(main())"]


def start_app(model: str | None, output_dir: Path, timeout: float = 300.0) -> tuple[float, subprocess.Popen, str]:
    """Launch ``esarm app --port P`` and wait for HTTP 200 on ``/``: (seconds from the command, the process, the
    page's URL). The caller stops the process."""
    port = free_port()
    command = [*esarm_command(), "app", "--port", str(port), "--output-dir", str(output_dir)]
    if model is not None:
        command += ["--model", str(model)]
    url = f"http://127.0.0.1:{port}/"
    started = time.perf_counter()
    with open(output_dir / "app.log", "wb") as log:  # the process keeps its own copy of the file
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"esarm app exited with {process.returncode}: {(output_dir / 'app.log').read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter() - started, process, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    stop_app(process)
    raise TimeoutError(f"esarm app did not answer on {url} within {timeout:g} s")


def stop_app(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def load_animator(model: str | None, output_dir: Path, video_height: int = VIDEO_HEIGHT) -> tuple[AppAnimator, str]:
    """The app's ``AppAnimator`` over ``model`` (``None``: esarm's default model), loaded as ``esarm app`` loads it,
    and a line naming the model."""
    from esarm.loading import load_model_and_processor

    if model is None:
        from esarm.default_model import describe_default_model

        name = describe_default_model().rsplit(" in ", 1)[0]  # without its folder (this machine's path)
    else:
        name = str(model)
    animator_model, processor = load_model_and_processor(model, "cpu")
    return AppAnimator(animator_model, processor, output_dir=output_dir, video_height=video_height), name


def measure_animation(animator: AppAnimator, audio: np.ndarray, repeats: int, emotion: str = "auto") -> dict:
    """``repeats`` runs of ``animate`` then ``render``, as one press of Animate: seconds per run of the model, the
    files and the video, the frames, the video's size and the emotion heard."""
    runs = {"model": [], "files": [], "video": []}
    for _ in range(repeats):
        with torch.no_grad():
            result = animator.animate(audio, emotion=emotion, sampling_rate=RATE)
            animator.render(result)
        for key in runs:
            runs[key].append(result.timings[key])
    return {
        **runs, "frames": len(result.blendshapes[0]), "fps": result.fps, "heard": result.emotions[0],
        "video_size": list(_video_size(result.video)),
    }  # fmt: skip


def _video_size(path: Path) -> tuple[int, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


def measure_browser(url: str, speech_file: Path, workdir: Path, timeout: float = 300.0) -> dict:
    """The page at ``url`` in headless Chromium (software WebGL): upload ``speech_file``, pick ``auto``, press
    Animate; seconds from the click to the 3D face loaded, to it playing, and to the video in the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    driver = headless_chromium(workdir / "profile")
    try:
        driver.set_page_load_timeout(timeout)
        driver.get(url)
        wait = WebDriverWait(driver, timeout)
        upload = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#esarm-audio input[type=file]")))
        upload.send_keys(str(speech_file))
        driver.find_element(By.CSS_SELECTOR, "#esarm-emotion input").click()
        wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "li[role=option][aria-label='auto']"))).click()
        # the upload must have finished before the button can use it: its player appears then
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#esarm-audio audio, #esarm-audio .waveform")))
        clicked = time.perf_counter()
        driver.find_element(By.CSS_SELECTOR, "#esarm-animate").click()

        frame = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#esarm-viewer-frame")))
        driver.switch_to.frame(frame)
        wait.until(lambda d: d.execute_script("return document.body.dataset.state") != "loading")
        if driver.execute_script("return document.body.dataset.state") != "ready":
            raise RuntimeError(f"the 3D viewer failed: {driver.execute_script('return window.esarmViewer.error')}")
        loaded = time.perf_counter() - clicked
        viewer = "return window.esarmViewer."
        drawn = driver.execute_script(viewer + "frames")
        driver.execute_script("document.getElementById('play').click()")  # in the page: native clicks wait for frames
        wait.until(lambda d: d.execute_script(viewer + "time()") > 0 and d.execute_script(viewer + "frames") > drawn)
        playing = time.perf_counter() - clicked
        driver.switch_to.default_content()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#esarm-video video[src]"))
        video = time.perf_counter() - clicked
        summary = driver.find_element(By.CSS_SELECTOR, "#esarm-summary").text
    finally:
        driver.quit()
    return {"viewer_loaded": loaded, "viewer_playing": playing, "video": video, "summary": summary}


def table(numbers: dict) -> str:
    """The markdown table of ``numbers`` (what :func:`main` measures; steps it skipped are left out)."""
    seconds = numbers["audio_seconds"]
    runs = numbers["animation"]
    repeats = len(runs["model"])
    width, height = runs["video_size"]
    load_start, load_end = numbers["load_start"], numbers["load_end"]
    lines = [
        f"CPU: {numbers['cpu']}, {numbers['cores']} cores, torch threads {numbers['torch_threads']}; load average "
        f"(1 min) {load_start:.2f} at the start, {load_end:.2f} at the end",
        f"model: {numbers['model']}",
        f"audio: {seconds:.2f} s of {numbers['audio']}, emotion auto (heard {runs['heard']}); {runs['frames']} "
        f"frames at {runs['fps']:g} fps; steps 2-4: median of {repeats} run(s)",
        "",
        f"| step | seconds | min - max of {repeats} |",
        "|---|---:|---:|",
    ]
    if "app_start" in numbers:
        lines.append(f"| app start (`esarm app`, command to first page) | {numbers['app_start']:.1f} | |")

    def spread(values: list[float], digits: int) -> str:
        return f"{min(values):.{digits}f} - {max(values):.{digits}f}"

    model = statistics.median(runs["model"])
    lines += [
        f"| model, {seconds:g} s of audio (`auto`; real-time factor {model / seconds:.2f}) | {model:.2f} | "
        f"{spread(runs['model'], 2)} |",
        f"| GLB + CSV + JSON | {statistics.median(runs['files']):.2f} | {spread(runs['files'], 2)} |",
        f"| MP4, {runs['frames']} frames at {width}x{height} | {statistics.median(runs['video']):.1f} | "
        f"{spread(runs['video'], 1)} |",
    ]
    if "browser" in numbers:
        browser = numbers["browser"]
        lines += [
            f"| click to 3D face loaded in the page | {browser['viewer_loaded']:.1f} | |",
            f"| click to 3D face playing (Play pressed once loaded) | {browser['viewer_playing']:.1f} | |",
            f"| click to video in the page | {browser['video']:.1f} | |",
            "",
            f"The page's own summary of that run: {browser['summary']}",
        ]
    return "\n".join(lines)


def run(
    model: str | None, seconds: float, repeats: int, workdir: Path, audio_file: str | None = None,
    app_start: bool = True, browser: bool = False, video_height: int = VIDEO_HEIGHT,
) -> dict:  # fmt: skip
    """Every step; returns the numbers :func:`table` prints (``app_start`` / ``browser``: whether to run those)."""
    numbers = {
        "cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_start": os.getloadavg()[0], "model": "esarm's default model" if model is None else str(model),
        "audio": str(audio_file or "esarm's sample speech (eSpeak NG)"), "audio_seconds": seconds,
        "repeats": repeats,
    }  # fmt: skip
    audio = speech(seconds, audio_file)
    speech_file = workdir / "speech.wav"
    soundfile.write(speech_file, audio, RATE, subtype="PCM_16")
    if app_start or browser:
        (workdir / "app-runs").mkdir(exist_ok=True)
        numbers["app_start"], process, url = start_app(model, workdir / "app-runs")
        try:
            if browser:
                numbers["browser"] = measure_browser(url, speech_file, workdir)
        finally:
            stop_app(process)
    animator, numbers["model"] = load_animator(model, workdir / "runs", video_height)
    numbers["animation"] = measure_animation(animator, audio, repeats)
    numbers["load_end"] = os.getloadavg()[0]
    return numbers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="STA model folder or Hub id (default: esarm's default model)")
    parser.add_argument("--audio", help="speech file (default: esarm's sample sentence), looped and cut to --seconds")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of speech")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the model, files and MP4 (median)")
    parser.add_argument("--threads", type=int, help="torch threads of this process (default: torch's)")
    parser.add_argument("--browser", action="store_true", help="also time the page in headless Chromium")
    parser.add_argument("--no-app-start", action="store_true", help="skip the `esarm app` subprocess")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.seconds <= 0:
        parser.error(f"--repeats must be >= 1 and --seconds > 0, got {args.repeats} and {args.seconds}")
    if args.browser and args.no_app_start:
        parser.error("--browser needs the app: drop --no-app-start")
    if args.browser and (missing := missing_browser_parts()):
        parser.error(f"--browser: {missing}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="esarm-app-bench-") as tmp:
        numbers = run(
            args.model, args.seconds, args.repeats, Path(tmp), args.audio, app_start=not args.no_app_start,
            browser=args.browser,
        )  # fmt: skip
    print(table(numbers), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(numbers, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
