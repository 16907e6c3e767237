"""hri_bridge node: facephi_ros faces and emotions -> ROS4HRI (REP-155) topics.

Optional (launch argument hri:=true). For each face the face-mesh node tracks, it publishes
  /humans/faces/tracked          hri_msgs/IdsList: the REP-155 ids of the faces in view, each frame
  /humans/faces/<id>/roi         hri_msgs/NormalizedRegionOfInterest2D: the face box in [0, 1]
  /humans/faces/<id>/expression  hri_msgs/Expression: the LSTM's label on /emotion as an Expression
                                 constant (fear -> scared, surprise -> surprised...), with valence,
                                 arousal and confidence
Ids are opaque 5-character tokens, one per track (facephi_ros/hri/faces.py). A face unseen for
`forget_after` seconds leaves the tracked list and its two topics are removed. Headers carry
the source image's stamp and frame (`reference_frame` overrides the frame). All topics are
reliable, keep-last. Without hri_msgs installed the node says so in one line and exits 0, so a
launch carries on without it.
Parameters: reference_frame, min_confidence, forget_after.
"""
from __future__ import annotations

import math
import sys
import time

from rclpy.node import Node

from facephi_ros.msg import EmotionEstimate, FaceLandmarksArray

from ..hri.faces import FaceRegistry, expression_name, normalized_roi
from .common import (
    EMOTION_TOPIC,
    FACES_TOPIC,
    Diagnostics,
    LogThrottle,
    StartupError,
    declare,
    reliable_qos,
    report_bad_input,
    run_node,
)

HUMANS_FACES = "/humans/faces"


def _hri_msgs():
    try:
        from hri_msgs.msg import Expression, IdsList, NormalizedRegionOfInterest2D
    except ImportError:
        return None
    return Expression, IdsList, NormalizedRegionOfInterest2D


class HriBridgeNode(Node):
    def __init__(self):
        super().__init__("hri_bridge")
        self.p = declare(self, {"reference_frame": "", "min_confidence": 0.0, "forget_after": 1.0})
        if not self.p["forget_after"] > 0 or not 0.0 <= self.p["min_confidence"] <= 1.0:
            raise StartupError(f"forget_after must be > 0 and min_confidence within [0, 1] (got "
                               f"{self.p['forget_after']}, {self.p['min_confidence']})")
        self.Expression, self.IdsList, self.Roi = _hri_msgs()
        self.registry = FaceRegistry(self.p["forget_after"])
        self.pubs: dict[int, tuple] = {}  # track id -> (roi publisher, expression publisher)
        self.diag = Diagnostics(self)
        self.throttle = LogThrottle()
        self.tracked_pub = self.create_publisher(self.IdsList, f"{HUMANS_FACES}/tracked", reliable_qos(10))
        self.create_subscription(FaceLandmarksArray, FACES_TOPIC, self._on_faces, reliable_qos())
        self.create_subscription(EmotionEstimate, EMOTION_TOPIC, self._on_emotion, reliable_qos(50))
        self.create_timer(0.2, self._forget)
        self._last_header = None
        self.get_logger().info("ROS4HRI bridge ready: /humans/faces/tracked, /humans/faces/<id>/{roi,expression}")

    def _frame(self, header):
        if self.p["reference_frame"]:
            header.frame_id = self.p["reference_frame"]
        return header

    def _on_faces(self, msg: FaceLandmarksArray) -> None:
        now = time.monotonic()
        header = self._frame(msg.header)
        self._last_header = header
        for f in msg.faces:
            if f.face_id == 0:
                continue
            w, h = f.image_width or msg.image_width, f.image_height or msg.image_height
            try:
                roi = normalized_roi(f.bbox_x, f.bbox_y, f.bbox_width, f.bbox_height, w, h)
            except ValueError as e:
                report_bad_input(self, self.diag, self.throttle, "bad_faces", f"face {f.face_id} skipped: {e}")
                continue
            if not all(math.isfinite(v) for v in roi):
                report_bad_input(self, self.diag, self.throttle, "bad_faces", f"face {f.face_id} skipped: box is not finite")
                continue
            face, new = self.registry.see(f.face_id, now)
            if new:
                base = f"{HUMANS_FACES}/{face.hri_id}"
                self.pubs[f.face_id] = (self.create_publisher(self.Roi, f"{base}/roi", reliable_qos(10)),
                                        self.create_publisher(self.Expression, f"{base}/expression", reliable_qos(10)))
                self.get_logger().info(f"face {f.face_id} is {face.hri_id}")
            out = self.Roi(xmin=roi[0], ymin=roi[1], xmax=roi[2], ymax=roi[3], c=float(min(1.0, max(0.0, f.detection_score))))
            out.header = header
            self.pubs[f.face_id][0].publish(out)
        self._drop(self.registry.forget(now))
        self._publish_tracked(header)
        self.diag.count("frames")
        self.diag.set("faces", len(self.registry.faces))

    def _on_emotion(self, e: EmotionEstimate) -> None:
        face = self.registry.faces.get(e.face_id)
        if face is None:
            return  # a face already forgotten, or not yet seen in landmarks
        name = expression_name(e.label)
        if name is None:
            report_bad_input(self, self.diag, self.throttle, "unmapped_labels", f"label '{e.label}' has no ROS4HRI expression")
            return
        if e.confidence < self.p["min_confidence"]:
            return
        out = self.Expression(expression=getattr(self.Expression, name),
                              valence=float(e.valence) if math.isfinite(e.valence) else 0.0,
                              arousal=float(e.arousal) if math.isfinite(e.arousal) else 0.0,
                              confidence=float(min(1.0, max(0.0, e.confidence))))
        out.header = self._frame(e.header)
        self.pubs[e.face_id][1].publish(out)
        self.diag.count("expressions")

    def _forget(self) -> None:
        gone = self.registry.forget(time.monotonic())
        if gone:
            self._drop(gone)
            header = self._last_header
            if header is not None:
                header.stamp = self.get_clock().now().to_msg()
                self._publish_tracked(header)

    def _drop(self, gone) -> None:
        for face in gone:
            for pub in self.pubs.pop(face.track_id, ()):
                self.destroy_publisher(pub)
            self.get_logger().info(f"face {face.track_id} ({face.hri_id}) left")

    def _publish_tracked(self, header) -> None:
        msg = self.IdsList(ids=self.registry.ids())
        msg.header = header
        self.tracked_pub.publish(msg)


def main(args=None) -> int:
    if _hri_msgs() is None:
        print("[facephi_ros] hri_bridge: hri_msgs is not installed, so the ROS4HRI bridge does not run "
              "(on a robot: apt install ros-<distro>-hri-msgs; here: FACEPHI_VENDOR=<folder> bash scripts/setup.sh)",
              file=sys.stderr, flush=True)
        return 0
    return run_node(HriBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
