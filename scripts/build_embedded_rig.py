"""Rebuild the face rig embedded in esarm (src/esarm/rig/assets/ict_facekit_arkit52.npz) from ICT-FaceKit.

    python scripts/build_embedded_rig.py /path/to/ICT-FaceKit            # a checkout (commit da5f95a)
    python scripts/build_embedded_rig.py --download                      # fetch the pinned files first
    python scripts/build_embedded_rig.py /path/to/ICT-FaceKit --reference other_rig.npz

Converts with esarm's own converter (esarm.rig.ict_facekit), writes the rig with int16 deltas (one scale per
target), copies ICT-FaceKit's MIT licence beside it when the checkout has one, and prints the checks: sizes, the
reference figures (9409 vertices, 18460 triangles, 1046 lip and 2301 eye/forehead vertices, jawOpen moving the lips
35-45 mm and the eyes under 1 mm, eyeBlinkLeft not moving the lips), the quantisation error against the
full-precision conversion, and LVE / EVE / MVE of random blendshape pairs on both. With --reference, also the
largest difference from another rig file of the same mesh (mm) and its region sizes.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from esarm.blendshapes import BLENDSHAPE_INDEX
from esarm.evaluation import metrics
from esarm.rig import EMBEDDED_RIG, FaceRig
from esarm.rig.ict_facekit import ICT_FACEKIT_COMMIT, download_ict_facekit

EXPECTED = {"vertices": 9409, "faces": 18460, "lips": 1046, "eye_forehead": 2301}


def pose(name: str) -> np.ndarray:
    weights = np.zeros(52)
    weights[BLENDSHAPE_INDEX[name]] = 1.0
    return weights


def metric_agreement(full: FaceRig, compact: FaceRig, sequences: int = 32, frames: int = 120) -> dict[str, float]:
    """Largest relative difference of LVE / EVE / MVE between the two rigs over random blendshape pairs."""
    rng = np.random.default_rng(0)
    worst = {}
    for name in ("lve", "eve", "mve"):
        metric = getattr(metrics, name)
        relative = []
        for _ in range(sequences):
            pred, target = rng.uniform(0, 1, size=(2, frames, 52))
            a, b = metric(pred, target, full), metric(pred, target, compact)
            relative.append(abs(a - b) / a)
        worst[name] = float(max(relative))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", help="ICT-FaceKit checkout or its FaceXModel folder")
    parser.add_argument("--download", action="store_true", help=f"download ICT-FaceKit @ {ICT_FACEKIT_COMMIT[:7]}")
    parser.add_argument("--output", default=str(EMBEDDED_RIG), help="rig file to write")
    parser.add_argument("--reference", help="a rig .npz of the same mesh to compare with (numbers only)")
    args = parser.parse_args(argv)
    if bool(args.source) == args.download:
        parser.error("give either an ICT-FaceKit folder or --download")
    workdir = tempfile.TemporaryDirectory() if args.download else None
    source = Path(download_ict_facekit(workdir.name) if workdir else args.source)

    full = FaceRig.from_ict_facekit(source)
    output = Path(args.output)
    full.save_npz(output, quantize=True)
    licence = next((p for p in (source / "LICENSE", source.parent / "LICENSE") if p.is_file()), None)
    if licence is not None:
        shutil.copyfile(licence, output.parent / "LICENSE-ICT-FaceKit.txt")
    compact = FaceRig.from_npz(output)
    if workdir:
        workdir.cleanup()

    sizes = {
        "vertices": compact.num_vertices,
        "faces": len(compact.faces),
        "lips": len(compact.region("lips")),
        "eye_forehead": len(compact.region("eye_forehead")),
    }
    jaw = np.linalg.norm(compact.offsets(pose("jawOpen")), axis=-1)
    blink = np.linalg.norm(compact.offsets(pose("eyeBlinkLeft")), axis=-1)
    checks = {
        **{f"{k} == {v}": sizes[k] == v for k, v in EXPECTED.items()},
        "jawOpen moves the lips 35-45 mm": 35 < jaw[compact.region("lips")].max() < 45,
        "jawOpen moves eyes/forehead < 1 mm": jaw[compact.region("eye_forehead")].max() < 1.0,
        "eyeBlinkLeft moves the lips < 0.01 mm": blink[compact.region("lips")].max() < 0.01,
        "tongueOut is zero": not compact.deltas[BLENDSHAPE_INDEX["tongueOut"]].any(),
        "68 landmarks": compact.landmarks is not None and len(compact.landmarks) == 68,
    }
    print(f"wrote {output}: {output.stat().st_size / 1e6:.2f} MB")
    print(f"  {compact}")
    print(f"  jawOpen: lips up to {jaw[compact.region('lips')].max():.2f} mm, eyes/forehead up to "
          f"{jaw[compact.region('eye_forehead')].max():.3f} mm")  # fmt: skip
    print(f"  quantisation: max |delta - full| = {np.abs(compact.deltas - full.deltas).max():.6f} mm, "
          f"neutral and regions identical: {np.array_equal(compact.neutral, full.neutral) and all(np.array_equal(compact.region(r), full.region(r)) for r in full.regions)}")  # fmt: skip
    worst = metric_agreement(full, compact)
    print("  metrics on 32 random pairs x 120 frames, largest relative difference compact vs full: "
          + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))  # fmt: skip
    if args.reference:
        reference = FaceRig.from_npz(args.reference)
        same_mesh = reference.num_vertices == full.num_vertices
        print(f"  reference {args.reference}: {reference}")
        if same_mesh:
            print(f"    max |neutral - reference| = {np.abs(full.neutral - reference.neutral).max():.6f} mm, "
                  f"max |deltas - reference| = {np.abs(full.deltas - reference.deltas).max():.6f} mm (full), "
                  f"{np.abs(compact.deltas - reference.deltas).max():.6f} mm (embedded)")  # fmt: skip
            for region in reference.regions:
                equal = np.array_equal(reference.region(region), compact.region(region))
                print(f"    region {region}: {len(reference.region(region))} reference vs "
                      f"{len(compact.region(region))} embedded, identical ids: {equal}")  # fmt: skip
            print(f"    faces identical: {np.array_equal(reference.faces, compact.faces)}")
        checks["reference has the same mesh"] = same_mesh
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
