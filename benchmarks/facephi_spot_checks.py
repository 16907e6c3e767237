"""Spot checks of FacePhi's likelihood label beside the 1,400-image evaluation: the four posed
photos of ../shared/data/faces and their mirror images, and the first N FER2013 test images of
every class (one rendering, no face = wrong). Several model folders can be compared in one run.

    python -m benchmarks.facephi_spot_checks [--model-dir DIR ...] [--per-class 20]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facephi_ros.evaluation.metrics import command_line, write_result
from facephi_ros.evaluation.spot_checks import accuracy, balanced_test_faces, posed_faces, predicted
from facephi_ros.facephi.runtime import FacePhiRuntime

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", action="append", help="FacePhi model folder (repeatable; default: the shipped model)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/facephi_spot_checks.json")
    args = ap.parse_args(argv)
    posed = posed_faces(args.data / "faces")
    fer = None
    result = {"per_class": args.per_class, "models": {}}
    for d in args.model_dir or [None]:
        rt = FacePhiRuntime(d, threads=2)
        if fer is None:
            fer = balanced_test_faces(args.data / "fer2013" / "test", rt.classes, args.per_class)
        said = predicted(rt, posed)
        fer_said = predicted(rt, fer)
        result["models"][d or "default"] = {
            "posed_right": sum(p == t for (_, t, _), p in zip(posed, said)),
            "posed_n": len(posed),
            "posed": {name: {"truth": t, "label": p} for (name, t, _), p in zip(posed, said)},
            "fer_balanced_acc": round(accuracy(fer, fer_said), 4),
            "fer_n": len(fer),
        }
    result["command"] = command_line("python -m benchmarks.facephi_spot_checks", argv)
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
