"""Is the suite free of flakes? Runs CI's own command (`bash .ci/run`) several times in a fresh
clone placed beside ../shared (as CI places it), then once more with a busy loop holding one
core for the whole run, and writes docs/results/ros_native.json.

  python -m benchmarks.ci_repeat [--runs 5] [--clone ../ci-repeat] [--keep]

The first run installs everything from scratch in the new clone (--reuse: an earlier clone's
set-up is kept and only the checkout is reset); the later runs reuse that set-up, as a
developer's reruns do. Each run's exit status, test counts and minutes are kept.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _busy(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def run_ci(clone: Path, log: Path) -> dict:
    t0 = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.run(["bash", ".ci/run"], cwd=clone, stdout=f, stderr=subprocess.STDOUT,
                            env={k: v for k, v in __import__("os").environ.items() if not k.startswith(("VIRTUAL_ENV", "ROS_DOMAIN"))}
                            | {"CI": "true"}).returncode
    text = log.read_text(errors="replace")
    tail = text.strip().splitlines()[-1] if text.strip() else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", tail)}
    failed = re.findall(r"^FAILED (\S+)", text, re.M)
    return {"rc": rc, "passed": rc == 0, "minutes": round((time.monotonic() - t0) / 60, 1), "counts": counts,
            "failed_tests": failed, "summary": tail}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--clone", type=Path, default=REPO.parent / "ci-repeat")
    ap.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing clone (and its set-up): reset it to this commit")
    ap.add_argument("--out", type=Path, default=REPO / "docs/results/ros_native.json")
    a = ap.parse_args(argv)
    if a.reuse and (a.clone / ".git").exists():
        subprocess.run(["git", "fetch", "-q", str(REPO), "HEAD"], cwd=a.clone, check=True)
        subprocess.run(["git", "reset", "-q", "--hard", "FETCH_HEAD"], cwd=a.clone, check=True)
        subprocess.run(["git", "clean", "-qfd"], cwd=a.clone, check=True)  # untracked files only; ignored set-up stays
    else:
        if a.clone.exists():
            shutil.rmtree(a.clone)
        subprocess.run(["git", "clone", "-q", str(REPO), str(a.clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=a.clone, capture_output=True, text=True).stdout.strip()
    logs = a.clone.parent / f"{a.clone.name}-logs"
    logs.mkdir(exist_ok=True)
    runs = []
    for k in range(a.runs):
        r = run_ci(a.clone, logs / f"run{k + 1}.log")
        runs.append(r)
        print(f"clean run {k + 1}/{a.runs}: {r['summary']} ({r['minutes']} min)", flush=True)
    stop = multiprocessing.Event()
    busy = multiprocessing.Process(target=_busy, args=(stop,), daemon=True)
    busy.start()
    try:
        b = run_ci(a.clone, logs / "busy.log")
    finally:
        stop.set()
        busy.join(5)
    print(f"busy-core run: {b['summary']} ({b['minutes']} min)", flush=True)
    res = {"commit": commit, "clean_runs": a.runs, "clean_runs_passed": sum(r["passed"] for r in runs),
           "busy_core_run_passed": b["passed"], "runs": runs, "busy_core_run": b,
           "machine": f"{multiprocessing.cpu_count()} cores",
           "command": "python -m benchmarks.ci_repeat " + " ".join(argv if argv is not None else sys.argv[1:])}
    a.out.write_text(json.dumps(res, indent=1))
    if not a.keep:
        shutil.rmtree(a.clone)
    return 0 if res["clean_runs_passed"] == a.runs and b["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
