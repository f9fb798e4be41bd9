"""``esarm app``: serve the Gradio page that animates speech and plays it on the 3D face (``esarm[app]``)."""

from __future__ import annotations

import argparse

from esarm.commands import CommandError, say


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "app", help="a web page (Gradio) to animate speech and watch the 3D face play it",
        description="Serve the esarm app: speech from a file or the microphone, emotion (or auto), intensity, "
        "speaker, epsilon, seed -> the 3D face in sync with the audio, the video, the curves, CSV / GLB / JSON "
        "downloads, and two emotions side by side. Needs pip install 'esarm[app]'.",
    )  # fmt: skip
    p.add_argument("--model", help="saved STA model folder or Hub id (user/repo) (default: esarm's default model)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, help="port (default: Gradio's, 7860 or the next free one)")
    p.add_argument("--output-dir", help="folder of the runs' files (default: esarm-app in the temporary folder)")
    p.add_argument("--rig", help="face rig (.npz/.glb/ICT-FaceKit folder) (default: $ESARM_RIG / embedded rig)")
    p.add_argument("--video-height", type=int, default=320, help="height of each face in the video (pixels)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        from esarm.app.ui import launch_app
    except ImportError as error:
        raise CommandError(f"the app needs Gradio: pip install 'esarm[app]' ({error})") from None
    if args.port is not None and not 0 < args.port < 65536:
        raise CommandError(f"--port must be in 1..65535, got {args.port}")
    if args.model is None:
        from esarm.default_model import describe_default_model

        say(f"esarm app: loading {describe_default_model()} (--model to use another) ...")
    else:
        say(f"esarm app: loading {args.model} ...")
    launch_app(
        args.model, host=args.host, port=args.port, output_dir=args.output_dir, rig=args.rig, device=args.device,
        video_height=args.video_height,
    )  # fmt: skip
    return 0
