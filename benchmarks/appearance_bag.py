"""Appearance mode's cost on the robot, by bag replay: the bundled clip at 640x480 / 30 Hz (one
face) through the whole default node set started by the project's launcher, once with the mode
off and once with it on, in the same run (this machine is noisy: the off run is the baseline).
Adds processed_ratio, latency_p50_ms (image publish -> /emotion arrival) and the off-run's
figures to docs/results/appearance.json (training/eval_appearance writes the accuracy keys).

    python -m benchmarks.appearance_bag
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bags")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "appearance.json")
    a = ap.parse_args(argv)
    from facephi_ros.assets import asset_path
    from facephi_ros.bags.evaluate import evaluate_bag
    from facephi_ros.bags.make import bag_from_video
    from facephi_ros.evaluation.metrics import command_line, write_result

    vbag = a.work / "default_640x480"
    if not vbag.exists():
        bag_from_video(asset_path("default_video"), vbag, width=640, height=480, rate=30.0)
    runs = {}
    for mode in ("off", "on"):
        flag = "true" if mode == "on" else "false"
        r = evaluate_bag(vbag, a.work / f"eval_appearance_{mode}", launch_args=[f"appearance:={flag}"])
        runs[mode] = {k: r[k] for k in ("processed_ratio", "latency_p50_ms", "latency_p95_ms", "estimate_ratio",
                                        "flips_per_min", "cpu_share", "cpu_share_total", "frames_published", "model")}
    res = json.loads(a.out.read_text()) if a.out.exists() else {}
    on, off = runs["on"], runs["off"]
    res.update({"processed_ratio": on["processed_ratio"], "latency_p50_ms": on["latency_p50_ms"],
                "latency_p50_ratio_to_off": round(on["latency_p50_ms"] / off["latency_p50_ms"], 3),
                "bag": {"input": str(vbag.relative_to(REPO)) + " (the bundled clip, 640x480, 30 Hz, one face)",
                        "node_set": "the launcher's default (camera off: images from the bag)", "on": on, "off": off,
                        "command": command_line("python -m benchmarks.appearance_bag", argv)}})
    write_result(a.out, res, show={k: v for k, v in res.items() if k != "details"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
