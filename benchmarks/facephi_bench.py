"""Benchmark: FacePhi speed per face on this CPU with the default model (issue 4: a likelihood
label in at most 150 ms, a label plus a one-sentence description in at most 1.5 s).

The node pools a face's last frames (pool_frames = 6 by default) before the LLM reads them, so
the label is also timed that way (label_pooled_ms_*: 6 frames encoded, averaged, one LLM pass);
the 150 ms check uses it.

Baseline in the same run: the same label computed without the cached prompt prefix (the prefix
recomputed for every face), so the KV cache's gain is a ratio, not an absolute claim.

    python -m benchmarks.facephi_bench [--repeats 30]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from facephi_ros.evaluation.metrics import command_line, write_result
from facephi_ros.evaluation.spot_checks import posed_faces
from facephi_ros.facephi.runtime import POOL_FRAMES, FacePhiRuntime

REPO = Path(__file__).resolve().parent.parent


def real_faces(folder: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]]:
    """(landmarks, blendshapes, matrix, width, height) of the posed photos in ../shared/data/faces
    and their mirror images, landmarked as the spot checks do (facephi_ros.evaluation.spot_checks)."""
    return [(f.landmarks, f.blendshapes, f.matrix, w, h) for _, _, hit in posed_faces(folder) if hit is not None
            for f, w, h in [hit]]


def timed(fn, n: int) -> np.ndarray:
    t = []
    for k in range(n):
        t0 = time.perf_counter()
        fn(k)
        t.append(time.perf_counter() - t0)
    return np.array(t) * 1000


def measure(rt: FacePhiRuntime, faces, repeats: int = 30) -> dict:
    def face(k):
        lm, bs, mat, w, h = faces[k % len(faces)]
        return [(lm, mat, bs)], w, h

    rt.label(*face(0))  # warm-up
    label = timed(lambda k: rt.label(*face(k)), repeats)

    def pooled(k):
        f, w, h = face(k)
        rt.model.class_probs(rt.pooled_features(f * POOL_FRAMES, w, h))
    label_pooled = timed(pooled, repeats)

    def no_cache(k):
        rt.model.clear_prefix_cache()
        rt.label(*face(k))
    baseline = timed(no_cache, max(5, repeats // 3))
    rt.model.prefix_cache(rt.default_instruction)

    def describe(k):
        f, w, h = face(k)
        rt.label(f, w, h)
        rt.answer(f, w, h)
    describe_ms = timed(describe, max(5, repeats // 3))
    from facephi_ros.landmarks.landmarker import BLENDSHAPE_NAMES
    va = timed(lambda k: rt.describe_va(0.6, 0.4, "happy", dict(zip(BLENDSHAPE_NAMES, faces[k % len(faces)][1].tolist()))), 3)
    p50 = lambda a: round(float(np.median(a)), 1)  # noqa: E731
    return {"label_ms_p50": p50(label), "label_ms_p95": round(float(np.percentile(label, 95)), 1),
            "label_pooled_ms_p50": p50(label_pooled), "label_pooled_ms_p95": round(float(np.percentile(label_pooled, 95)), 1),
            "pool_frames": POOL_FRAMES, "label_no_prefix_cache_ms_p50": p50(baseline), "prefix_cache_speedup": round(p50(baseline) / p50(label), 2),
            "describe_ms_p50": p50(describe_ms), "describe_ms_p95": round(float(np.percentile(describe_ms, 95)), 1),
            "va_description_ms_p50": p50(va), "faces": len(faces),
            "meets_label_150ms": bool(max(p50(label), p50(label_pooled)) <= 150), "meets_describe_1500ms": bool(p50(describe_ms) <= 1500)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--dtype", default="auto", help="LLM weights: auto (the node's default), float32, bfloat16")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/facephi_bench.json")
    a = ap.parse_args(argv)
    faces = real_faces(a.data)
    if not faces:
        print(f"error: no face found in {a.data}", file=sys.stderr)
        return 1
    rt = FacePhiRuntime(a.model_dir, dtype=a.dtype)
    res = measure(rt, faces, a.repeats)
    res["dtype"] = str(rt.dtype).replace("torch.", "")
    f = faces[0]
    from facephi_ros.landmarks.landmarker import BLENDSHAPE_NAMES
    res["example_answer"] = rt.answer([(f[0], f[2], f[1])], f[3], f[4])[0]
    res["example_va_description"] = rt.describe_va(0.6, 0.4, "happy", dict(zip(BLENDSHAPE_NAMES, f[1].tolist())))
    res["command"] = command_line("python -m benchmarks.facephi_bench", argv)
    write_result(a.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
