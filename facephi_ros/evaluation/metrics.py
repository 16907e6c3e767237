"""Classification and stream metrics, and the plots evaluations write."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def confusion(y_true, y_pred, n: int) -> np.ndarray:
    """(n, n) counts; rows = truth, columns = prediction. A prediction of -1 (no face) counts in
    no column but still in its row's total (it is wrong)."""
    cm = np.zeros((n, n), np.int64)
    for t, p in zip(np.asarray(y_true), np.asarray(y_pred)):
        if p >= 0:
            cm[t, p] += 1
    return cm


def classification_report(y_true, y_pred, classes: list[str]) -> dict:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n = len(classes)
    cm = confusion(y_true, y_pred, n)
    support = np.bincount(y_true, minlength=n)
    tp = np.diag(cm)
    predicted = cm.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
    return {
        "n": int(len(y_true)), "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": float(f1[support > 0].mean()) if (support > 0).any() else 0.0,
        "per_class": {c: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                          "f1": round(float(f1[i]), 4), "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion": cm.tolist(),
    }


def label_flips_per_minute(labels: list, times_s: list[float]) -> float:
    """How often the reported label changes, per minute of stream."""
    if len(labels) < 2:
        return 0.0
    flips = sum(1 for a, b in zip(labels, labels[1:]) if a != b)
    minutes = (times_s[-1] - times_s[0]) / 60.0
    return flips / minutes if minutes > 0 else 0.0


def reaction_times(pred: list, truth: list, times_s: list[float], changes: list[int], hold: int = 1) -> list[float]:
    """For each index in `changes` (where the true label changes), the seconds until the
    prediction first equals the new label for `hold` consecutive frames (NaN if never, before
    the next change)."""
    out = []
    bounds = list(changes) + [len(truth)]
    for c, nxt in zip(changes, bounds[1:]):
        run = 0
        found = float("nan")
        for k in range(c, nxt):
            run = run + 1 if pred[k] == truth[k] else 0
            if run >= hold:
                found = times_s[k - hold + 1] - times_s[c]
                break
        out.append(found)
    return out


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def command_line(prog: str, argv=None) -> str:
    """The command that produced a result, with its arguments (argv, or the process's own)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([prog] + args)


def write_result(path, result: dict, show: dict | None = None) -> Path:
    """Write an evaluation's JSON result (creating folders) and print it (or `show`)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result if show is None else show, indent=1))
    return path


def plot_confusion(cm, classes: list[str], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, float)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(classes), 0.8 + 0.8 * len(classes)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (row-normalised; counts below)")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_timeline(times_s, series: dict[str, list], classes: list[str], path: str | Path, title: str = "") -> Path:
    """Emotion timeline: one step line per series (e.g. ground truth, LSTM, per-frame)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.35 * len(classes) + 0.3 * len(series)))
    offsets = np.linspace(-0.2, 0.2, len(series)) if len(series) > 1 else [0.0]
    index = {c: i for i, c in enumerate(classes)}
    for off, (name, labels) in zip(offsets, series.items()):
        y = [index.get(lab, np.nan) + off for lab in labels]
        ax.step(times_s, y, where="post", label=name, lw=1.2)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def median_ms(fn, repeats: int = 300, warmup: int = 20) -> float:
    """Median wall time in ms of fn(k) for k in range(repeats), after fn(k) for k in range(warmup)
    (k lets a caller time a different input per call)."""
    for k in range(warmup):
        fn(k)
    ts = []
    for k in range(repeats):
        t = time.perf_counter()
        fn(k)
        ts.append(time.perf_counter() - t)
    return 1000 * float(np.median(ts))
