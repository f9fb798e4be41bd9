"""The app: what one run writes (no Gradio needed), the vendored three.js viewer, the ``esarm app`` command, and the
page itself driven in a real headless Chromium: upload a generated wav, animate it under two emotions side by side,
check that the 3D faces load and move, that the video lasts as long as the audio, and that the downloads parse."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from esarm import ESARMProcessor, ESARMSTAConfig, ESARMSTAForGeneration
from esarm.app import AppAnimator, curves_figure
from esarm.app.browser import chromium_binary, free_port, headless_chromium
from esarm.app.vendor import THREE_FILES, THREE_VERSION, VENDOR_DIR, vendored_revision
from esarm.blendshapes import ARKIT_NAMES, LIVE_LINK_NAMES
from esarm.cli import main
from esarm.export import read_gltf_animation, read_json, read_live_link_csv

STATIC_DIR = VENDOR_DIR.parents[1]
CHROMIUM = chromium_binary()
CHROMEDRIVER = shutil.which("chromedriver")
HAS_GRADIO = importlib.util.find_spec("gradio") is not None
HAS_SELENIUM = importlib.util.find_spec("selenium") is not None


def _speech(path: Path, seconds: float, rate: int = 22050) -> Path:
    """A speech-like test signal: a 150 Hz buzz with its harmonics, opened and closed 4 times a second."""
    t = np.arange(int(seconds * rate)) / rate
    buzz = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    soundfile.write(path, (0.2 * buzz * envelope).astype(np.float32), rate)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A random-init tiny STA model with a processor that knows two speakers, saved like a trained one."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "sta"
    model = ESARMSTAForGeneration(ESARMSTAConfig.tiny()).eval()
    model.save_pretrained(folder)
    ESARMProcessor(speakers=["alice", "bob"], fps=model.config.fps).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def animator(model_dir, tmp_path_factory) -> AppAnimator:
    model = ESARMSTAForGeneration.from_pretrained(model_dir).eval()
    processor = ESARMProcessor.from_pretrained(model_dir)
    return AppAnimator(model, processor, output_dir=tmp_path_factory.mktemp("runs"), video_height=96, max_runs=3)


# ---------------------------------------------------------------------------------------------------------------
# One run, without Gradio


def test_a_run_writes_valid_glb_csv_json_and_a_video_as_long_as_the_audio(animator, tmp_path):
    import av

    speech = _speech(tmp_path / "speech.wav", 1.0)
    result = animator.animate(str(speech), emotion="auto", intensity=3, speaker="bob", epsilon=0.1, seed=1)
    assert result.video is None and set(result.timings) == {"model", "files", "total"}
    assert result.labels[0].startswith("auto: heard ") and result.emotions[0] in result.labels[0]
    assert result.duration == pytest.approx(1.0, abs=1e-3)
    frames = round(result.duration * result.fps)
    assert result.blendshapes[0].shape == (frames, 52)
    # The viewer's audio: 16 kHz mono, same duration as the input.
    samples, rate = soundfile.read(result.audio)
    assert rate == 16000 and samples.ndim == 1 and len(samples) == 16000

    (glb,), (csv_path,), (json_path,) = result.glb, result.csv, result.json
    assert result.downloads == [csv_path, glb, json_path]
    for read in (read_gltf_animation, read_live_link_csv, read_json):
        path = {read_gltf_animation: glb, read_live_link_csv: csv_path, read_json: json_path}[read]
        values, fps = read(path)
        assert fps == pytest.approx(result.fps) and values.shape == (frames, 52), path.name
        np.testing.assert_allclose(values, result.blendshapes[0], atol=2e-6, err_msg=path.name)
    assert json.loads(json_path.read_text())["metadata"]["speaker"] == "bob"

    video = animator.render(result)
    assert video == result.video and video.parent == result.folder
    assert set(result.timings) == {"model", "files", "video", "total"}
    assert result.timings["total"] == pytest.approx(sum(result.timings[k] for k in ("model", "files", "video")))
    with av.open(str(video)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
        assert float(container.duration / av.time_base) == pytest.approx(1.0, abs=0.05)
    assert "real-time factor" in result.summary() and "video" in result.summary()


def test_side_by_side_gives_one_animation_per_emotion(animator, tmp_path):
    speech = _speech(tmp_path / "speech.wav", 0.6)
    result = animator.animate(str(speech), emotion="happy", compare_emotion="sad", seed=0)
    assert result.labels == ["happy", "sad"] and result.emotions == ["happy", "sad"]
    assert [p.name for p in result.glb] == ["face_happy.glb", "face_sad.glb"]
    assert len(result.downloads) == 6
    assert [json.loads(p.read_text())["metadata"]["emotion"] for p in result.json] == ["happy", "sad"]
    same = animator.animate(str(speech), emotion="angry", compare_emotion="angry", seed=0)
    assert [p.name for p in same.glb] == ["face_angry_1.glb", "face_angry_2.glb"]
    np.testing.assert_array_equal(same.blendshapes[0], same.blendshapes[1])  # same seed, same condition


def test_old_runs_are_deleted_beyond_max_runs(animator, tmp_path):
    speech = _speech(tmp_path / "speech.wav", 0.3)
    folders = [animator.animate(str(speech), emotion="neutral").folder for _ in range(5)]
    kept = sorted(p for p in animator.output_dir.glob("run-*"))
    assert len(kept) == animator.max_runs == 3
    assert set(folders[-3:]) <= set(kept) and not folders[0].exists()


def test_bad_input_names_the_argument_and_the_value(animator, tmp_path):
    speech = str(_speech(tmp_path / "speech.wav", 0.3))
    cases = [
        (dict(emotion="joyful"), "emotion must be 'auto' or one of"),
        (dict(emotion="happy", compare_emotion="glad"), "compare_emotion must be 'auto' or one of"),
        (dict(intensity=4), "intensity must be one of [1, 2, 3], got 4"),
        (dict(epsilon=1.5), "epsilon must be in [0, 1], got 1.5"),
        # an unknown name is the unknown speaker (esarm.labels); an id beyond the known speakers is an error
        (dict(speaker="7"), "speaker must be one of the known speakers ['alice', 'bob']"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            animator.animate(speech, **kwargs)
    with pytest.raises(ValueError, match="audio must be a recording"):
        animator.animate(None)
    with pytest.raises(ValueError, match="max_runs must be at least 1, got 0"):
        AppAnimator(animator.model, max_runs=0, output_dir=tmp_path)


def test_curves_figure_draws_each_curve_of_each_animation():
    animations = [np.random.default_rng(0).random((30, 52), dtype=np.float32) for _ in range(2)]
    figure = curves_figure(animations, ["happy", "sad"], fps=30.0, names=("jawOpen", "browInnerUp"))
    (axes,) = figure.axes
    assert len(axes.lines) == 4
    np.testing.assert_array_equal(axes.lines[1].get_ydata(), animations[0][:, ARKIT_NAMES.index("browInnerUp")])
    assert axes.lines[2].get_linestyle() == "--"
    with pytest.raises(ValueError, match="unknown names \\['jawWide'\\]"):
        curves_figure(animations, ["a", "b"], 30.0, names=("jawWide",))
    with pytest.raises(ValueError, match="one label per animation \\(2\\), got 1"):
        curves_figure(animations, ["a"], 30.0)


@pytest.mark.slow  # a fresh interpreter importing torch + transformers: 8 s alone, 36 s on a busy 2-core machine
def test_the_core_and_the_run_logic_do_not_import_gradio():
    code = "import sys, esarm, esarm.app, esarm.cli; esarm.cli.build_parser(); print('gradio' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"


# ---------------------------------------------------------------------------------------------------------------
# The vendored viewer


def test_vendored_three_is_the_pinned_version_with_its_licence():
    assert vendored_revision() == THREE_VERSION.split(".")[1]
    for _, relative in THREE_FILES:
        assert (VENDOR_DIR / relative).is_file(), relative
    assert "MIT License" in (VENDOR_DIR / "LICENSE").read_text()


def test_every_import_of_the_viewer_resolves_to_a_shipped_file():
    """Walk the viewer's ES-module import graph through its import map: every module it reaches is in the package,
    and no import points at another server."""
    html = (STATIC_DIR / "viewer.html").read_text()
    import_map = json.loads(re.search(r'<script type="importmap">(.*?)</script>', html, re.S).group(1))["imports"]
    assert not re.search(r"(src|href)=\"https?:", html)

    def resolve(specifier: str, importer: Path) -> Path:
        for prefix, target in sorted(import_map.items(), key=lambda item: -len(item[0])):
            if specifier == prefix or (prefix.endswith("/") and specifier.startswith(prefix)):
                return (STATIC_DIR / (target + specifier[len(prefix) :])).resolve()
        assert specifier.startswith("."), f"{importer.name} imports {specifier!r}, which is neither mapped nor local"
        return (importer.parent / specifier).resolve()

    pattern = re.compile(r"(?:^|\n)\s*(?:import|export)\s[^;]*?from\s*'([^']+)'|(?:^|\n)\s*import\s*'([^']+)'")
    seen, pending = set(), [STATIC_DIR / "viewer.js"]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        assert module.is_file(), f"missing module {module}"
        for match in pattern.finditer(module.read_text(encoding="utf-8")):
            pending.append(resolve(match.group(1) or match.group(2), module))
    assert {p.name for p in seen} >= {"three.module.js", "three.core.js", "GLTFLoader.js", "OrbitControls.js"}


# ---------------------------------------------------------------------------------------------------------------
# The command


def test_app_command_help_and_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["app", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert all(flag in help_text for flag in ("--model", "--port", "--host"))
    assert main(["app", "--model", "m", "--port", "70000"]) == 2
    error = capsys.readouterr().err
    expected = "--port must be in 1..65535, got 70000" if HAS_GRADIO else "pip install 'esarm[app]'"
    assert expected in error and "Traceback" not in error
    if HAS_GRADIO:
        (tmp_path / "empty").mkdir()
        assert main(["app", "--model", str(tmp_path / "empty")]) == 2
        assert "no config.json" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# The page in a real browser


def _canvas_png(driver) -> np.ndarray:
    """A screenshot of the 3D view: the WebGL canvas as PNG (its drawing buffer is preserved), as int16 RGB."""
    import base64

    from PIL import Image

    url = driver.execute_script("return document.querySelector('#stage canvas').toDataURL('image/png')")
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _fetch(url: str, destination: Path) -> Path:
    with urllib.request.urlopen(url, timeout=30) as response:
        destination.write_bytes(response.read())
    return destination


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="needs chromium and chromium-driver (Debian)")
@pytest.mark.skipif(not HAS_GRADIO, reason="needs gradio: pip install 'esarm[app]'")
@pytest.mark.skipif(not HAS_SELENIUM, reason="needs selenium: pip install 'esarm[dev]'")
def test_the_page_in_a_real_browser(model_dir, tmp_path, request):
    import av
    import pygltflib
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    from esarm.app import launch_app

    seconds = 3.0
    speech = _speech(tmp_path / "speech.wav", seconds)
    port = free_port()
    started = time.perf_counter()
    demo = launch_app(
        str(model_dir), port=port, output_dir=tmp_path / "runs", device="cpu", video_height=96,
        prevent_thread_lock=True, quiet=True,
    )  # fmt: skip
    request.addfinalizer(demo.close)
    start_seconds = time.perf_counter() - started
    driver = headless_chromium(tmp_path / "profile", log_requests=True)
    request.addfinalizer(driver.quit)
    driver.set_page_load_timeout(60)
    url = f"http://127.0.0.1:{port}/"
    driver.get(url)
    wait = WebDriverWait(driver, 60)

    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#esarm-audio input[type=file]")))
    driver.find_element(By.CSS_SELECTOR, "#esarm-audio input[type=file]").send_keys(str(speech))
    driver.find_element(By.CSS_SELECTOR, "#esarm-compare input").click()
    wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "li[role=option][aria-label='happy']"))).click()
    # ε = 1 (uniform random tokens): a random-init model's greedy tokens settle on one pose, which would not move
    epsilon = driver.find_element(By.CSS_SELECTOR, "#esarm-epsilon input[type=number]")
    epsilon.clear()
    epsilon.send_keys("1", Keys.TAB)
    # The upload finishes before the button can use it: wait for the player of the uploaded file.
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#esarm-audio audio, #esarm-audio .waveform")))
    clicked = time.perf_counter()
    driver.find_element(By.CSS_SELECTOR, "#esarm-animate").click()

    frame = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#esarm-viewer-frame")))
    driver.switch_to.frame(frame)
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.state") != "loading")
    assert driver.execute_script("return document.body.dataset.state") == "ready", driver.execute_script(
        "return window.esarmViewer.error"
    )
    viewer_seconds = time.perf_counter() - clicked
    assert driver.execute_script("return window.esarmViewer.models") == 2
    labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#labels span")]
    assert labels == ["neutral", "happy"]  # the default emotion is neutral ("auto" misfires on unseen voices)
    assert driver.execute_script("return window.esarmViewer.duration") == pytest.approx(seconds - 1 / 30, abs=0.02)
    # Playing: the clock runs (the audio's, or the wall clock where the browser has no sound device). Clicks are
    # dispatched in the page: WebDriver's native clicks wait for frames, which take long in software WebGL.
    viewer = "return window.esarmViewer."
    drawn = driver.execute_script(viewer + "frames")
    driver.execute_script("document.getElementById('play').click()")
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(viewer + "frames") > drawn)
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(viewer + "time()") > 0)
    if driver.execute_script(viewer + "playing()"):  # a busy machine may have played the whole clip already
        driver.execute_script("document.getElementById('play').click()")
    # the pause settles once the page's pending play request (audio.play() is a promise) has been answered
    WebDriverWait(driver, 10).until(lambda d: not d.execute_script(viewer + "playing()"))
    played = driver.execute_script(viewer + "time()")
    assert 0 < played <= seconds
    # The face at three moments, reached with the position slider; each picture is taken once a frame at that
    # moment has been drawn.
    pictures, weights = [], []
    moments = (0.4, 1.0, 2.0)
    for moment in moments:
        drawn = driver.execute_script(viewer + "frames")
        driver.execute_script(
            "const seek = document.getElementById('seek'); seek.value = arguments[0];"
            "seek.dispatchEvent(new Event('input'));",
            moment / driver.execute_script(viewer + "duration"),
        )  # fmt: skip
        WebDriverWait(driver, 20).until(lambda d, drawn=drawn: d.execute_script(viewer + "frames") > drawn)
        assert driver.execute_script(viewer + "time()") == pytest.approx(moment, abs=0.01)
        weights.append(driver.execute_script(viewer + "influenceSum()"))
        pictures.append(_canvas_png(driver))
    # the two moments whose morph weights differ most: the animation must move between them
    first, second = max(((i, j) for i in range(3) for j in range(i + 1, 3)), key=lambda p: abs(weights[p[0]] - weights[p[1]]))
    assert weights[first] != weights[second], weights
    still = pictures[0]
    # A face is drawn (not just the background), and it moves between those moments.
    background = still[0, 0]
    assert (np.abs(still - background).sum(axis=-1) > 30).mean() > 0.05
    changed = np.abs(pictures[first] - pictures[second]).sum(axis=-1) > 12
    moved = f"{moments[first]} s and {moments[second]} s"
    assert changed.sum() > 50, f"only {changed.sum()} pixels changed between {moved}"
    driver.switch_to.default_content()

    summary = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#esarm-summary").text)
    assert "real-time factor" in summary
    video_element = WebDriverWait(driver, 120).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#esarm-video video[src]")
    )[0]
    video_seconds = time.perf_counter() - clicked
    video = _fetch(video_element.get_attribute("src"), tmp_path / "video.mp4")
    with av.open(str(video)) as container:
        assert float(container.duration / av.time_base) == pytest.approx(seconds, abs=0.05)
        assert {s.type for s in container.streams} == {"video", "audio"}
    wait.until(lambda d: "video" in d.find_element(By.CSS_SELECTOR, "#esarm-summary").text)

    links = {
        Path(urllib.parse.unquote(urllib.parse.urlparse(href).path)).name: href
        for href in {a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#esarm-downloads a[href]")}
    }
    names = {f"face_{emotion}.{kind}" for emotion in ("neutral", "happy") for kind in ("csv", "glb", "json")}
    assert set(links) == names, links
    for name, href in sorted(links.items()):
        path = _fetch(href, tmp_path / name)
        if path.suffix == ".csv":
            rows = list(csv.DictReader(io.StringIO(path.read_text())))
            assert len(rows) == round(seconds * 30) and {"Timecode", *LIVE_LINK_NAMES} <= set(rows[0]), name
            float(rows[-1]["JawOpen"])
        elif path.suffix == ".glb":
            gltf = pygltflib.GLTF2().load(str(path))
            assert len(gltf.meshes[0].primitives[0].targets) == 52, name
            assert gltf.animations[0].channels[0].target.path == "weights", name
        else:
            document = json.loads(path.read_text())
            assert document["names"] == list(ARKIT_NAMES) and len(document["frames"]) == round(seconds * 30), name

    # Offline: every network request the page made went to this server (chrome:// pages are the browser's own).
    urls = [
        json.loads(entry["message"])["message"]["params"]["request"]["url"]
        for entry in driver.get_log("performance")
        if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"
    ]
    local = (f"http://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/")
    elsewhere = [u for u in urls if re.match(r"^(https?|wss?)://", u) and not u.startswith(local)]
    assert len(urls) > 10 and not elsewhere, elsewhere
    print(
        f"app start {start_seconds:.1f} s; after the click: 3D view {viewer_seconds:.1f} s, video "
        f"{video_seconds:.1f} s; whole test {time.perf_counter() - started:.1f} s; {summary}"
    )
