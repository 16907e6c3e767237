"""Replay a bag through the running pipeline and score what comes back (issue 5).

1. The pipeline is started by the project's launcher (camera off: images come from the bag).
2. This process plays /camera/image_raw with its original timing (best-effort QoS) and records
   /emotion, /emotion/description and /facephi/faces into <out>/recorded (MCAP).
3. The bare landmarker is timed on the bag's first images in the same run, for comparison.
4. Scores (facephi_ros.evaluation.bag_metrics) go to <out>/bag_eval.json with a confusion
   matrix and an emotion timeline against the ground truth.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..evaluation.bag_metrics import per_frame, score
from ..evaluation.metrics import plot_confusion, plot_timeline
from .io import GT_TOPIC, BagError, BagReader, stamp_ns, typestore

IMAGE_TOPIC = "/camera/image_raw"
RECORD = ["/emotion", "/emotion/description", "/facephi/faces"]


def cdr_stamp(raw: bytes) -> int:
    """Header stamp of a CDR-serialised message that starts with std_msgs/Header."""
    if len(raw) < 12 or raw[1] != 1:
        raise BagError("message is not little-endian CDR with a header")
    return int.from_bytes(raw[4:8], "little", signed=True) * 10**9 + int.from_bytes(raw[8:12], "little")


def bare_landmarker_ms(bag: Path, n: int = 150) -> float:
    from ..landmarks.image import image_to_rgb
    from ..landmarks.landmarker import Landmarker

    times = []
    with BagReader(bag) as r, Landmarker(num_faces=4) as lm:
        for k, (_, _, t, _, msg) in enumerate(r.messages([IMAGE_TOPIC])):
            if k >= n:
                break
            rgb = image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data)
            t0 = time.perf_counter()
            lm.detect(rgb, stamp_ns(msg.header) // 10**6)
            times.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(times)), 2) if times else float("nan")


def _children_cpu(pid: int) -> dict:
    import psutil

    out = {}
    try:
        for c in psutil.Process(pid).children(recursive=True):
            try:
                t = c.cpu_times()
                cmd = c.cmdline()
                # node executables are Python scripts: name them by the script, not the interpreter
                exe = next((part for part in cmd if "/lib/facephi_ros/" in part), cmd[0] if cmd else str(c.pid))
                out[c.pid] = (exe.rsplit("/", 1)[-1], t.user + t.system)
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return out


def _runs_facephi(launch_args: list[str]) -> bool:
    from ..launch_spec import _true, defaults

    args = defaults()
    args.update(a.split(":=", 1) for a in launch_args if ":=" in a)
    return _true(args["run_facephi"])


def evaluate_bag(bag: str | Path, out: str | Path, rate: float = 1.0, launch_args: list[str] | None = None,
                 json_path: str | Path | None = None, settle: float = 3.0, ready_timeout: float = 90.0) -> dict:
    import rclpy
    from rclpy.node import Node

    from ..nodes.bag_tools import Player, Recorder
    from .cli import _spin_in_background

    bag, out = Path(bag), Path(out)
    ts = typestore()
    with BagReader(bag, ts) as r:
        r.require([IMAGE_TOPIC])
        truth, classes = {}, []
        if GT_TOPIC in r.topics:
            r.require([GT_TOPIC])
            for _, _, _, _, m in r.messages([GT_TOPIC]):
                classes = list(m.class_names)
                truth[stamp_ns(m.header)] = (classes.index(m.label), int(m.face_id))
    bare_ms = bare_landmarker_ms(bag)
    out.mkdir(parents=True, exist_ok=True)
    rec_path = out / "recorded"
    if rec_path.exists():
        import shutil

        shutil.rmtree(rec_path)
    cmd = [sys.executable, "-m", "facephi_ros.launcher", "run_camera:=false", "run_monitor:=false", *(launch_args or [])]
    # the replay starts once every node is up; FacePhi creates its topic after loading its LLM
    wanted = ["/emotion", "/facephi/faces"] + (["/emotion/description"] if _runs_facephi(launch_args or []) else [])
    log = open(out / "pipeline.log", "w")
    pipeline = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    own_init = not rclpy.ok()
    if own_init:
        rclpy.init()
    node = Node(f"facephi_bag_eval_{os.getpid()}")
    stop = None
    try:
        recorder = Recorder(node, rec_path, RECORD, keep=True)
        player = Player(node, bag, [IMAGE_TOPIC], rate=rate)
        player.record_times = True
        stop, th = _spin_in_background(node)
        t_end = time.monotonic() + ready_timeout
        while time.monotonic() < t_end:
            if pipeline.poll() is not None:
                raise BagError(f"the pipeline exited with status {pipeline.returncode} (see {out / 'pipeline.log'})")
            graph = dict(node.get_topic_names_and_types())
            if player.pubs[IMAGE_TOPIC].get_subscription_count() > 0 and all(t in graph for t in wanted):
                break
            time.sleep(0.2)
        else:
            raise BagError(f"the pipeline did not come up within {ready_timeout:.0f} s (see {out / 'pipeline.log'})")
        time.sleep(2.0)  # let the reverse direction of discovery settle
        cpu0, t0 = _children_cpu(pipeline.pid), time.monotonic()
        published = player.play()
        wall = time.monotonic() - t0
        cpu1 = _children_cpu(pipeline.pid)
        last = -1
        t_quiet = time.monotonic() + settle
        while time.monotonic() < t_quiet:  # wait until nothing more arrives
            n = sum(recorder.counts.values())
            if n != last:
                last, t_quiet = n, time.monotonic() + 1.0
            time.sleep(0.2)
    finally:
        if stop is not None:
            stop.set()
        os.killpg(pipeline.pid, signal.SIGINT) if pipeline.poll() is None else None
        try:
            pipeline.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(pipeline.pid, signal.SIGKILL)
        log.close()
    counts = recorder.close()
    node.destroy_node()
    if own_init:
        rclpy.try_shutdown()

    images = {cdr_stamp(raw): wall_ns for topic, wall_ns, raw in player.publish_times}
    faces = {}
    for _, raw in recorder.kept["/facephi/faces"]:
        m = ts.deserialize_cdr(raw, "facephi_ros/msg/FaceLandmarksArray")
        faces[stamp_ns(m.header)] = len(m.faces)
    rows, model = [], ""
    for arrival, raw in recorder.kept["/emotion"]:
        m = ts.deserialize_cdr(raw, "facephi_ros/msg/EmotionEstimate")
        model = m.model
        if not classes:
            classes = list(m.class_names)
        rows.append((stamp_ns(m.header), m.label, float(m.confidence), list(m.class_names), list(m.probabilities), arrival))
    estimates, top = per_frame(rows, classes)
    res = score(images, truth, faces, estimates, classes)
    if truth:  # the model's own top class, as offline figures score it (the label above is the calm rule's)
        t = score(images, truth, faces, top, classes)
        res["model_top_class"] = {k: t[k] for k in ("accuracy", "macro_f1", "segment_accuracy", "segment_macro_f1",
                                                    "reaction_s", "flips_per_min")}
    cpu = {}
    for pid, (name, c1) in cpu1.items():
        if pid in cpu0:
            cpu[name] = round(cpu.get(name, 0.0) + (c1 - cpu0[pid][1]) / wall, 3)
    res.update({"bare_landmarker_p50_ms": bare_ms, "cpu_share": cpu, "cpu_share_total": round(sum(cpu.values()), 3),
                "model": model, "classes": classes, "bag": str(bag), "published": published, "recorded": counts,
                "replay_rate": rate, "replay_seconds": round(wall, 2), "machine": f"{os.cpu_count()} cores",
                "command": "facephi-bag evaluate " + " ".join([str(bag)] + (launch_args or []))})
    if truth:
        plot_confusion(res["report"]["confusion"], classes, out / "confusion.png",
                       f"{bag.name}: per-frame, acc {res['accuracy']:.3f}, macro-F1 {res['macro_f1']:.3f} (no estimate = wrong)")
    stamps = sorted(images)
    times = [(s - stamps[0]) / 1e9 for s in stamps]
    series = {}
    if truth:
        series["ground truth"] = [classes[truth[s][0]] for s in stamps]
    series[model or "estimate"] = [classes[estimates[s][0]] if s in estimates and estimates[s][0] >= 0 else None for s in stamps]
    k = min(len(stamps), 1800)
    plot_timeline(times[:k], {n: v[:k] for n, v in series.items()}, classes, out / "timeline.png",
                  f"{bag.name}: emotion timeline (first {times[k - 1] if k else 0:.0f} s)")
    (out / "bag_eval.json").write_text(json.dumps(res, indent=1))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({k: v for k, v in res.items() if not k.endswith("report")}, indent=1))
    return res
