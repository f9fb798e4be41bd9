"""Vendor the three.js files the 3D viewer imports, from the ``three`` package of the npm registry.

The viewer runs offline: its JavaScript ships inside esarm (``esarm/app/static/vendor/three``) and nothing is fetched
at run time. This module is the build-time step that puts it there, so that an update is one command::

    python -m esarm.app.vendor            # the pinned THREE_VERSION
    python -m esarm.app.vendor --version 0.188.0

It runs ``npm pack three@VERSION`` (npm from Node.js must be on PATH), unpacks the tarball and copies only the
files the viewer's import graph reaches, plus three.js's MIT licence. ``build/`` becomes the folder's root and
``examples/jsm/`` becomes ``addons/`` (the names three.js's own docs import them by, ``three`` and ``three/addons/``);
the relative imports between the addons keep working because their layout under ``addons/`` is unchanged.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

THREE_VERSION = "0.187.0"
VENDOR_DIR = Path(__file__).parent / "static" / "vendor" / "three"
# The viewer imports three.module.js (which imports three.core.js), GLTFLoader (which imports the two utils) and
# OrbitControls: this list is that import graph, as (path in the npm package, path in VENDOR_DIR).
THREE_FILES: tuple[tuple[str, str], ...] = (
    ("LICENSE", "LICENSE"),
    ("build/three.core.js", "three.core.js"),
    ("build/three.module.js", "three.module.js"),
    ("examples/jsm/controls/OrbitControls.js", "addons/controls/OrbitControls.js"),
    ("examples/jsm/loaders/GLTFLoader.js", "addons/loaders/GLTFLoader.js"),
    ("examples/jsm/utils/BufferGeometryUtils.js", "addons/utils/BufferGeometryUtils.js"),
    ("examples/jsm/utils/SkeletonUtils.js", "addons/utils/SkeletonUtils.js"),
)


def vendored_revision(vendor_dir: str | Path = VENDOR_DIR) -> str:
    """The three.js ``REVISION`` of the vendored ``three.core.js`` (``"187"`` for 0.187.0)."""
    core = Path(vendor_dir) / "three.core.js"
    if not core.is_file():
        raise FileNotFoundError(f"vendor_dir must hold three.core.js, got {core} (no such file)")
    for line in core.read_text(encoding="utf-8").splitlines()[:50]:
        if line.startswith("const REVISION = "):
            return line.split("'")[1]
    raise ValueError(f"{core} must define `const REVISION = '...'` in its first 50 lines, found none")


def vendor_three(version: str = THREE_VERSION, destination: str | Path = VENDOR_DIR) -> Path:
    """Download ``three@version`` from the npm registry with ``npm pack`` and copy :data:`THREE_FILES` to
    ``destination`` (replaced). Returns ``destination``."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm must be on PATH to vendor three.js (install Node.js), found none")
    destination = Path(destination)
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([npm, "pack", f"three@{version}", "--silent"], cwd=work, check=True, capture_output=True)
        tarball = next(Path(work).glob("three-*.tgz"))
        with tarfile.open(tarball) as archive:
            archive.extractall(work, filter="data")
        package = Path(work) / "package"
        if destination.exists():
            shutil.rmtree(destination)
        for source, relative in THREE_FILES:
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(package / source, target)
    expected = version.split(".")[1]
    revision = vendored_revision(destination)
    if revision != expected:
        raise ValueError(f"three@{version} must have REVISION {expected!r}, the vendored files say {revision!r}")
    logger.info("vendored three@%s (%d files) into %s", version, len(THREE_FILES), destination)
    return destination


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Vendor three.js from npm into esarm's app viewer.")
    parser.add_argument("--version", default=THREE_VERSION, help=f"three version on npm (default {THREE_VERSION})")
    parser.add_argument("--destination", default=str(VENDOR_DIR), help="folder to fill (replaced)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    vendor_three(args.version, args.destination)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
