"""monitor node: prints, once per `period`, what the pipeline sees (faces, ids, rates, emotions).

Reads only landmarks and estimates (never images). Used by the main job (scripts/run.sh).
"""
from __future__ import annotations

import math
import time

from rclpy.node import Node

from facephi_ros.msg import EmotionEstimate, FaceLandmarksArray

from .common import (
    DESCRIPTION_TOPIC,
    EMOTION_TOPIC,
    FACES_TOPIC,
    declare,
    reliable_qos,
    run_node,
)


def format_estimate(e: EmotionEstimate) -> str:
    va = "" if math.isnan(e.valence) else f" (valence {e.valence:+.2f}, arousal {e.arousal:+.2f})"
    mode = " [appearance]" if "hybrid" in e.model else ""  # the hybrid model answered (appearance mode)
    return f"{e.label} {e.confidence:.2f}{va}{mode}"


class MonitorNode(Node):
    def __init__(self):
        super().__init__("monitor")
        self.p = declare(self, {"period": 1.0})
        self.t0 = time.monotonic()
        self.frames = 0
        self.dropped = 0
        self.last_faces: FaceLandmarksArray | None = None
        self.latency: list[float] = []
        self.emotions: dict[int, EmotionEstimate] = {}
        self.descriptions: dict[int, EmotionEstimate] = {}
        self.create_subscription(FaceLandmarksArray, FACES_TOPIC, self._on_faces, reliable_qos())
        self.create_subscription(EmotionEstimate, EMOTION_TOPIC, lambda m: self.emotions.__setitem__(m.face_id, m), reliable_qos())
        self.create_subscription(EmotionEstimate, DESCRIPTION_TOPIC, lambda m: self.descriptions.__setitem__(m.face_id, m), reliable_qos())
        self.create_timer(self.p["period"], self._print)

    def _on_faces(self, m: FaceLandmarksArray) -> None:
        self.frames += 1
        self.dropped += m.dropped_frames
        self.last_faces = m
        now = self.get_clock().now().nanoseconds
        self.latency.append((now - (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)) / 1e6)

    def _print(self) -> None:
        t = time.monotonic() - self.t0
        rate = self.frames / self.p["period"]
        lat = sorted(self.latency)[len(self.latency) // 2] if self.latency else float("nan")
        head = f"[{t:6.1f} s] {rate:5.1f} frames/s, latency p50 {lat:5.1f} ms, dropped {self.dropped}"
        self.frames, self.dropped, self.latency = 0, 0, []
        m = self.last_faces
        if m is None:
            print(f"{head} | waiting for /facephi/faces", flush=True)
            return
        if not m.faces:
            print(f"{head} | no face", flush=True)
            return
        parts = []
        for f in m.faces:
            s = f"face #{f.face_id} at ({f.bbox_x + f.bbox_width / 2:.0f}, {f.bbox_y + f.bbox_height / 2:.0f}) px"
            if f.face_id in self.emotions:
                s += ": " + format_estimate(self.emotions[f.face_id])
            if f.face_id in self.descriptions and self.descriptions[f.face_id].description:
                s += f' "{self.descriptions[f.face_id].description}"'
            parts.append(s)
        print(f"{head} | {len(m.faces)} face{'s' if len(m.faces) > 1 else ''}: " + "; ".join(parts), flush=True)
        seen = {f.face_id for f in m.faces}
        for d in (self.emotions, self.descriptions):
            for k in [k for k in d if k not in seen]:
                del d[k]


def main(args=None) -> int:
    return run_node(MonitorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
