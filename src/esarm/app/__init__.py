"""The esarm app: a Gradio page to animate speech with an STA model and see the 3D face play it (``esarm app``).

- :class:`~esarm.app.animation.AppAnimator`: the model side (animate, write GLB / CSV / JSON, render the MP4);
  needs no Gradio.
- :func:`~esarm.app.ui.build_app` / :func:`~esarm.app.ui.launch_app`: the page; need ``pip install 'esarm[app]'``.

The 3D viewer (``static/viewer.html``) runs three.js vendored from npm (:mod:`esarm.app.vendor`); nothing is
fetched from the internet at run time.
"""

from esarm.app.animation import AppAnimator, AppResult, curves_figure

__all__ = ["AppAnimator", "AppResult", "build_app", "curves_figure", "launch_app"]


def __getattr__(name: str):
    # Gradio is an optional extra: imported only when the page is built.
    if name in ("build_app", "launch_app"):
        from esarm.app import ui

        return getattr(ui, name)
    raise AttributeError(f"module 'esarm.app' has no attribute {name!r}")
