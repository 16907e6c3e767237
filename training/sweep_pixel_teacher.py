"""Train several pixel-teacher settings side by side and keep the one that validation prefers.

    python -m training.sweep_pixel_teacher --budget-min 6          # on a CUDA machine: ~7 min
    python -m training.sweep_pixel_teacher --only e100 --budget-min 0   # one setting, to the end

Each setting is one `training.train_pixel_teacher --no-test` process (same architecture family,
same validation hold-out: the stratified 10% of the training split, seed 0). They share the
device, so on a GPU they run at once; on a CPU run one at a time (`--only`). With --budget-min
each process times itself first and trains as many of its epochs as fit (the one-cycle schedule
is set for that number). Nothing here reads the test split: the winner is the run whose best
epoch scores highest on validation (the better of plain and mirrored, as train_pixel_teacher
itself picks epochs), and `train_pixel_teacher --finish` on its run folder reads the test split
once. The table of every run goes to docs/results/pixel_teacher_sweep.json.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from facephi_ros.evaluation.metrics import command_line, write_result
from training.train_pixel_teacher import TRAINING_STATE

PROG = "python -m training.sweep_pixel_teacher"

# name -> train_pixel_teacher arguments (its defaults otherwise: 32-256 channels, dropout 0.4,
# shift 4 px, zoom 10%, rotation 10 degrees, erasing 0.25, AdamW 3e-3 one-cycle, batch 128)
SETTINGS = {
    "e60": ["--epochs", "60"],
    "e100": ["--epochs", "100"],
    "e150": ["--epochs", "150"],
    "e100_regularised": ["--epochs", "100", "--dropout", "0.5", "--erase", "0.5"],
    "e100_stronger_crops": ["--epochs", "100", "--rotate", "15", "--scale", "0.15", "--shift", "6"],
    "e100_wider": ["--epochs", "100", "--channels", "40", "80", "160", "320"],
}


def summary(run: Path) -> dict | None:
    last = run / "last.pt"
    if not last.is_file():
        return None
    ck = torch.load(last, map_location="cpu", weights_only=False)
    return {"best_epoch": ck["best"]["epoch"], "val": ck["best"]["val"], "score": ck["best"]["score"],
            "epochs_trained": ck["epoch"], "epochs": ck["settings"]["epochs"],
            "train_minutes": round(ck["train_seconds"] / 60, 2), "trained_on": ck.get("trained_on"),
            "settings": ck["settings"], "val_by_epoch": [r["val"]["mirror"]["acc7"] for r in ck["history"]]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/teacher_sweep"))
    ap.add_argument("--cache", type=Path, default=Path("runs/pixel_teacher/fer2013_train.npz"),
                    help="the training images as train_pixel_teacher caches them (enough without the image folders)")
    ap.add_argument("--only", nargs="+", choices=sorted(SETTINGS), default=sorted(SETTINGS))
    ap.add_argument("--budget-min", type=float, default=0.0, help="per run (0: every epoch asked for)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per run")
    ap.add_argument("--deadline-min", type=float, default=0.0,
                    help="stop runs still going after this many minutes (0: wait for them)")
    ap.add_argument("--copy-best", type=Path, default=None,
                    help="copy the winner's run here, small enough to bring back from a rented machine: its best "
                         "weights, log and last.pt as a record without the training state (train_pixel_teacher "
                         "--finish evaluates it)")
    ap.add_argument("--results", type=Path, default=Path("docs/results/pixel_teacher_sweep.json"))
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                    help="more train_pixel_teacher arguments for every run (last; e.g. --extra --max-steps 3)")
    a = ap.parse_args(argv)
    used = [str(a.runs / name) for name in a.only if (a.runs / name / "last.pt").exists()]
    if used:  # their results would be ranked as this sweep's
        raise SystemExit(f"{', '.join(used)} already hold a run: choose another --runs or delete them")
    procs = {}
    for name in a.only:
        run = a.runs / name
        run.mkdir(parents=True, exist_ok=True)
        if a.cache.is_file() and not (run / "fer2013_train.npz").exists():
            (run / "fer2013_train.npz").symlink_to(a.cache.resolve())
        cmd = [sys.executable, "-m", "training.train_pixel_teacher", "--no-test", "--runs", str(run),
               "--out", str(run / "out"), "--threads", str(a.threads), "--budget-min", str(a.budget_min),
               *SETTINGS[name], *a.extra]
        log = open(run / "log.txt", "a")
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
        print(f"{name}: {' '.join(cmd[2:])}", flush=True)
    t0, outcome = time.time(), {}
    for name, (p, log) in procs.items():
        try:
            rc = p.wait(timeout=max(1.0, t0 + a.deadline_min * 60 - time.time()) if a.deadline_min else None)
            outcome[name] = "finished" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:  # its checkpoint of the last finished epoch stays
            p.terminate()
            rc = p.wait()
            outcome[name] = f"stopped at the {a.deadline_min}-min deadline"
        log.close()
        tail = (a.runs / name / "log.txt").read_text().strip().splitlines()[-3:]
        print(f"{name}: exit {rc} after {(time.time() - t0) / 60:.1f} min; " + " | ".join(tail), flush=True)
    runs = {name: summary(a.runs / name) for name in a.only}
    for name, r in runs.items():
        if r is not None:
            r["outcome"] = outcome[name]
    done = {k: v for k, v in runs.items() if v is not None and not outcome[k].startswith("failed")}
    if not done:
        raise SystemExit(f"no run finished an epoch: {outcome}")
    winner = max(done, key=lambda k: done[k]["score"])
    for k, v in sorted(done.items(), key=lambda kv: -kv[1]["score"]):
        print(f"{k:22s} best epoch {v['best_epoch']:3d}/{v['epochs']:3d}  val {v['val']['plain']['acc7']:.4f} "
              f"mirrored {v['val']['mirror']['acc7']:.4f}  {v['train_minutes']:.1f} min{'  <- chosen' if k == winner else ''}")
    if a.copy_best is not None:
        a.copy_best.mkdir(parents=True, exist_ok=True)
        for f in ("best.safetensors", "log.txt"):
            shutil.copy2(a.runs / winner / f, a.copy_best / f)
        record = torch.load(a.runs / winner / "last.pt", map_location="cpu", weights_only=False)
        for k in TRAINING_STATE:
            record.pop(k, None)
        torch.save(record, a.copy_best / "last.pt")
    write_result(a.results, {
        "what": "pixel teacher settings trained side by side; the winner is chosen on the validation hold-out "
                "(stratified 10% of the training split, seed 0), the test split is not read here",
        "chosen": winner, "chosen_by": "best epoch's validation accuracy, the better of plain and mirrored",
        "budget_min_per_run": a.budget_min, "runs": runs, "arguments": {k: SETTINGS[k] for k in a.only},
        "command": command_line(PROG, argv)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
