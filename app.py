"""Entry point of a Hugging Face Space (Gradio SDK) running the esarm app, or ``python app.py`` locally.

The model is the Hub id or folder in ``$ESARM_MODEL`` (a Space variable), else the folder ``model/`` next to this
file. The Space's requirements.txt needs one line: ``esarm[app]``. Locally, ``esarm app --model ...`` does the same.
"""

import os
import sys
from pathlib import Path

from esarm.app import launch_app

if __name__ == "__main__":
    local = Path(__file__).resolve().parent / "model"
    model = os.environ.get("ESARM_MODEL") or (str(local) if (local / "config.json").is_file() else None)
    if model is None:
        sys.exit("app.py: set ESARM_MODEL to an STA model (Hub id or folder), or put one in ./model")
    # Spaces set GRADIO_SERVER_NAME=0.0.0.0 and GRADIO_SERVER_PORT; a local run stays on 127.0.0.1:7860.
    launch_app(
        model,
        host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
