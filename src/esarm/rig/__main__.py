"""``python -m esarm.rig download``: fetch ICT-FaceKit at its pinned commit (sha256-checked), convert it and cache
the full-precision rig, which :func:`esarm.rig.resolve_rig` then prefers to the embedded one.
``python -m esarm.rig info``: print which rig is used and its size."""

from __future__ import annotations

import argparse
import logging
import sys

from .face_rig import default_cache_dir, resolve_rig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m esarm.rig", description=__doc__)
    parser.add_argument("command", choices=["download", "info"])
    parser.add_argument("--cache-dir", default=None, help=f"where converted rigs live (default {default_cache_dir()})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        rig = resolve_rig(None, download=args.command == "download", cache_dir=args.cache_dir)
    except OSError as error:
        print(f"esarm.rig: {error}", file=sys.stderr)
        return 2
    print(rig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
