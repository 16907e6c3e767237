"""facephi-bag: make, inspect, record, replay and evaluate rosbag2 files without ROS tooling.

  facephi-bag make-video VIDEO OUT.mcap [--width 640] [--max-frames N]
  facephi-bag make-images ROOT OUT.mcap [--split test] [--per-class 50] [--hold 1.0] [--transition 0.1]
  facephi-bag info BAG
  facephi-bag record OUT.mcap --topics /emotion /facephi/faces [--duration S]
  facephi-bag play BAG [--topics T ...] [--remap OLD:=NEW ...] [--rate 1.0] [--loop] [--start S]
  facephi-bag evaluate BAG [--out DIR] [--rate 1.0] [launch args name:=value ...]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .io import BagError, BagReader


def _spin_in_background(node):
    import threading

    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor()
    ex.add_node(node)
    stop = threading.Event()

    def run():
        while not stop.is_set():
            ex.spin_once(timeout_sec=0.05)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return stop, th


def cmd_info(a) -> int:
    with BagReader(a.bag) as r:
        counts = {c.topic: c.msgcount for c in r.connections}
        print(json.dumps({"path": str(a.bag), "duration_s": round(r.reader.duration / 1e9, 3),
                          "messages": r.reader.message_count,
                          "topics": {t: {"type": m, "count": counts.get(t), "unknown": t in r.unknown}
                                     for t, m in r.topics.items()}}, indent=1))
    return 0


def cmd_record(a) -> int:
    import signal
    import time

    import rclpy
    from rclpy.node import Node

    from ..nodes.bag_tools import Recorder

    rclpy.init()
    node = Node("facephi_bag_recorder")
    rec = Recorder(node, a.out, a.topics, a.storage)
    stop, th = _spin_in_background(node)
    done = {"flag": False}

    def handler(signum, frame):
        done["flag"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    print(f"recording {', '.join(a.topics)} to {a.out} (Ctrl-C to stop)", flush=True)
    t_end = time.monotonic() + a.duration if a.duration else None
    t_progress = time.monotonic() + a.progress if a.progress else None
    while not done["flag"] and (t_end is None or time.monotonic() < t_end):
        time.sleep(0.1)
        if t_progress is not None and time.monotonic() >= t_progress:
            t_progress += a.progress
            with rec.lock:
                print(json.dumps({"progress": dict(rec.counts)}), flush=True)
    stop.set()
    th.join(2)
    counts = rec.close()
    print(json.dumps({"recorded": counts, "path": str(a.out)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def cmd_play(a) -> int:
    import rclpy
    from rclpy.node import Node

    from ..nodes.bag_tools import Player

    remap = dict(r.split(":=", 1) for r in a.remap)
    rclpy.init()
    node = Node("facephi_bag_player")
    try:
        player = Player(node, a.bag, a.topics or None, remap, a.rate, a.loop, a.start)
        stop, th = _spin_in_background(node)
        if a.wait_subscribers:
            player.wait_for_subscribers(list(player.pubs), a.wait_subscribers)
        try:
            counts = player.play()
        except KeyboardInterrupt:
            player.stop()
            counts = player.published
        print(json.dumps({"published": counts}), flush=True)
        stop.set()
        th.join(2)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="facephi-bag", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make-video")
    p.add_argument("video", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--width", type=int, default=0)
    p.add_argument("--height", type=int, default=0)
    p.add_argument("--max-frames", type=int, default=0)
    p.add_argument("--rate", type=float, default=0.0, help="stamp rate (default: the video's)")
    p.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    p = sub.add_parser("make-images")
    p.add_argument("root", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--split", default="test")
    p.add_argument("--per-class", type=int, default=0, help="images per class (0: all)")
    p.add_argument("--hold", type=float, default=1.0, help="seconds each face is shown")
    p.add_argument("--transition", type=float, default=0.1, help="cross-fade seconds between faces")
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--canvas", default="", metavar="WxH", help="show each image small inside frames of this size (e.g. 640x480)")
    p.add_argument("--face-px", type=int, nargs=2, default=[48, 64], metavar=("MIN", "MAX"),
                   help="with --canvas: the face's width in pixels, drawn per image")
    p.add_argument("--background", type=Path, default=None, help="with --canvas: a video of an empty room")
    p.add_argument("--face-moves", action="store_true", help="with --canvas: a new place for every image")
    p.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    p = sub.add_parser("info")
    p.add_argument("bag", type=Path)
    p = sub.add_parser("record")
    p.add_argument("out", type=Path)
    p.add_argument("--topics", nargs="+", required=True)
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("--progress", type=float, default=0.0, help="print the counts so far every this many seconds")
    p.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    p = sub.add_parser("play")
    p.add_argument("bag", type=Path)
    p.add_argument("--topics", nargs="*", default=[])
    p.add_argument("--remap", nargs="*", default=[], metavar="OLD:=NEW")
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--loop", action="store_true")
    p.add_argument("--start", type=float, default=0.0, help="start this many seconds into the bag")
    p.add_argument("--wait-subscribers", type=float, default=0.0, metavar="S", help="wait up to S seconds for subscribers")
    p = sub.add_parser("evaluate")
    p.add_argument("bag", type=Path)
    p.add_argument("--out", type=Path, default=Path("runs/bag_eval"))
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--json", type=Path, default=None, help="also write the summary here")
    p.add_argument("launch_args", nargs="*", metavar="name:=value")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "make-video":
            from .make import bag_from_video

            print(json.dumps(bag_from_video(a.video, a.out, a.storage, a.width, a.max_frames, a.rate, a.height)))
        elif a.cmd == "make-images":
            from .make import StreamSpec, bag_from_images

            canvas = (0, 0)
            if a.canvas:
                try:
                    canvas = tuple(int(v) for v in a.canvas.lower().split("x"))
                    assert len(canvas) == 2 and min(canvas) > 0
                except (ValueError, AssertionError):
                    raise BagError(f"--canvas takes WIDTHxHEIGHT, e.g. 640x480 (got '{a.canvas}')") from None
            spec = StreamSpec(a.hold, a.transition, a.rate, a.per_class, a.seed, canvas=canvas,
                              face_px=tuple(a.face_px), background=str(a.background or ""), face_moves=a.face_moves)
            print(json.dumps(bag_from_images(a.root, a.split, a.out, spec, a.storage)))
        elif a.cmd == "info":
            return cmd_info(a)
        elif a.cmd == "record":
            return cmd_record(a)
        elif a.cmd == "play":
            return cmd_play(a)
        elif a.cmd == "evaluate":
            from .evaluate import evaluate_bag

            res = evaluate_bag(a.bag, a.out, a.rate, a.launch_args, json_path=a.json)
            print(json.dumps({k: v for k, v in res.items() if not k.endswith("report")}, indent=1))
        return 0
    except BagError as e:
        print(f"facephi-bag: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
