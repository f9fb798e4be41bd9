"""The Gradio page: inputs (speech from a file or the microphone, emotion, intensity, speaker, epsilon, seed, a
second emotion for side by side), and outputs (the 3D face playing in sync with the audio, the time it took, the
blendshape curves, the Live Link CSV / GLB / JSON downloads, then the rendered MP4).

The 3D view is ``static/viewer.html`` (three.js, vendored in the package) in an iframe, served with the run's files
through Gradio's own file route; :func:`launch_app` allows exactly the viewer's folder and the runs' folder.
"""

from __future__ import annotations

import logging
import os
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import gradio as gr

from esarm.app.animation import AUTO, UNKNOWN_SPEAKER, AppAnimator, AppResult, curves_figure
from esarm.blendshapes import EMOTIONS
from esarm.loading import load_model_and_processor

logger = logging.getLogger(__name__)

__all__ = ["STATIC_DIR", "build_app", "launch_app", "viewer_html"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
VIEWER_HEIGHT = 460  # pixels; the face fills most of it at the default Gradio column width
NO_COMPARISON = "none"

INTRO = """\
# esarm: speech to an emotional 3D face
Upload speech or record it, pick an emotion (`auto` uses the one the model hears), press **Animate**. The face plays
in sync with the audio (drag to turn it, scroll to zoom); the video, the curves and the files follow.
"""

PLACEHOLDER = (
    f'<div style="height:{VIEWER_HEIGHT}px;display:flex;align-items:center;justify-content:center;'
    'background:#1e2026;color:#aaa;border-radius:8px">the animated face appears here</div>'
)


def viewer_url(result: AppResult) -> str:
    """Relative URL of the viewer page playing ``result`` (its GLBs side by side, its audio), through Gradio's
    ``/gradio_api/file=`` route; relative, so that it also works under a proxy's path prefix (Hub Spaces)."""
    query = [("model", str(path)) for path in result.glb]
    query += [("label", label) for label in result.labels]
    query.append(("audio", str(result.audio)))
    return f"gradio_api/file={STATIC_DIR / 'viewer.html'}?{urlencode(query)}"


def viewer_html(result: AppResult) -> str:
    """The iframe holding the 3D viewer of ``result``."""
    return (
        f'<iframe id="esarm-viewer-frame" src="{escape(viewer_url(result))}" title="animated 3D face" '
        f'style="width:100%;height:{VIEWER_HEIGHT}px;border:0;border-radius:8px;background:#1e2026" '
        'allow="autoplay"></iframe>'
    )


def build_app(animator: AppAnimator, title: str = "esarm: speech to 3D face") -> gr.Blocks:
    """The Gradio ``Blocks`` page over ``animator`` (launch it with :func:`launch_app`, which serves the viewer)."""

    def animate(audio, emotion, intensity, speaker, epsilon, seed, compare_emotion):
        try:
            result = animator.animate(
                audio, emotion=emotion, intensity=int(intensity), speaker=speaker, epsilon=float(epsilon),
                seed=None if seed is None else int(seed), compare_emotion=compare_emotion,
            )  # fmt: skip
        except (ValueError, OSError) as error:
            raise gr.Error(str(error)) from None
        figure = curves_figure(result.blendshapes, result.labels, result.fps)
        summary = f"**{result.summary()}** · rendering the video..."
        files = [str(path) for path in result.downloads]
        return viewer_html(result), summary, figure, files, None, result

    def render(result: AppResult):
        animator.render(result)
        return str(result.video), f"**{result.summary()}**"

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                audio = gr.Audio(
                    sources=["upload", "microphone"], type="filepath", label="speech", elem_id="esarm-audio"
                )
                emotion = gr.Dropdown(
                    [*EMOTIONS, AUTO], value="neutral", label="emotion", info="auto: the emotion the model hears",
                    elem_id="esarm-emotion",
                )  # fmt: skip
                intensity = gr.Slider(1, 3, value=2, step=1, label="intensity")
                speaker = gr.Dropdown(
                    [UNKNOWN_SPEAKER, *animator.speakers], value=UNKNOWN_SPEAKER, label="speaker",
                    info="a speaker the model was trained on, or unknown",
                )  # fmt: skip
                epsilon = gr.Slider(
                    0.0, 1.0, value=0.0, step=0.05, label="ε (epsilon-greedy noise, 0 = the model's)",
                    elem_id="esarm-epsilon",
                )
                seed = gr.Number(0, precision=0, label="seed")
                compare = gr.Dropdown(
                    [NO_COMPARISON, AUTO, *EMOTIONS], value=NO_COMPARISON, label="side by side: second emotion",
                    info="the same audio under a second emotion", elem_id="esarm-compare",
                )  # fmt: skip
                button = gr.Button("Animate", variant="primary", elem_id="esarm-animate")
            with gr.Column(scale=2):
                viewer = gr.HTML(PLACEHOLDER, elem_id="esarm-viewer")
                summary = gr.Markdown(elem_id="esarm-summary")
                downloads = gr.File(
                    file_count="multiple", label="downloads: Live Link CSV, GLB, JSON", elem_id="esarm-downloads"
                )
                video = gr.Video(label="rendered video (with audio)", elem_id="esarm-video", interactive=False)
                curves = gr.Plot(label="blendshape curves", elem_id="esarm-curves")
        result = gr.State()
        button.click(
            animate,
            [audio, emotion, intensity, speaker, epsilon, seed, compare],
            [viewer, summary, curves, downloads, video, result],
        ).success(render, [result], [video, summary])
    return demo


def launch_app(
    model_name_or_path: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    output_dir: str | os.PathLike | None = None,
    rig: str | os.PathLike | None = None,
    device: str | None = None,
    video_height: int = 320,
    **launch_kwargs: Any,
) -> gr.Blocks:
    """Load the STA model (folder or Hub id; ``None``: esarm's default model), build the page and serve it on ``host:port`` (blocks until stopped
    unless ``prevent_thread_lock=True`` is passed through ``launch_kwargs``).

    ``output_dir`` holds the runs (default: ``esarm-app`` in the system's temporary folder); it and the viewer's
    static folder are the only folders the server hands files out of, besides Gradio's own cache.
    """
    import tempfile

    model, processor = load_model_and_processor(model_name_or_path, device)
    if output_dir is None:
        output_dir = Path(tempfile.gettempdir()) / "esarm-app"
    animator = AppAnimator(model, processor, output_dir=output_dir, rig=rig, video_height=video_height)
    demo = build_app(animator)
    demo.queue(default_concurrency_limit=1)  # one model, one animation at a time
    demo.launch(
        server_name=host, server_port=port, allowed_paths=[str(STATIC_DIR), str(animator.output_dir)],
        **launch_kwargs,
    )  # fmt: skip
    return demo
