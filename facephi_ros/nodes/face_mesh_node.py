"""face_mesh node: images -> faces found and landmarked by MediaPipe -> tracked FaceLandmarksArray.

By default (multi_face: true) faces are found by a tiled detector, near or far, confirmed by a
second look, and each is landmarked in a crop of its own (facephi_ros/landmarks/multiface.py;
docs/faces.md). multi_face: false leaves detection to the landmarker's own short-range detector
on the whole frame (faces within about 2 m, a group loses most of its faces).

Subscribes /camera/image_raw (sensor-data QoS). The subscription callback only stores the newest
image; a worker thread runs the landmarker on it, so a slow frame never builds a backlog:
frames replaced before they were processed are counted as dropped. Publishes
/facephi/faces (FaceLandmarksArray, one per processed frame, also when empty), /diagnostics,
and /facephi/debug_image (mesh drawn) only when publish_debug_image is true: no other pixels
leave this node.

appearance: true (off by default) is the opt-in accuracy mode: for each tracked face the node
cuts an eye-aligned grey crop from the frame it holds and runs the appearance network on it
(facephi_ros/appearance), adding the embedding and class logits to the face's FaceLandmarks as
numbers. The crop stays in the node. With the mode off the network is never imported or loaded.
"""
from __future__ import annotations

import array
import threading
import time

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import Image

from facephi_ros.msg import FaceLandmarksArray

from ..landmarks.image import ImageError, image_to_rgb
from ..landmarks.landmarker import Landmarker
from ..landmarks.multiface import MultiFaceConfig, MultiFaceLandmarker
from ..landmarks.tracker import FaceTracker
from .common import (
    DEBUG_IMAGE_TOPIC,
    FACES_TOPIC,
    IMAGE_TOPIC,
    SENSOR_QOS,
    ManagedNode,
    StartupError,
    reliable_qos,
    run_node,
)
from .convert import face_to_msg, make_array, set_appearance
from .latest import LatestSlot

# A stamp more than this far behind the previous one is a time reset (a bag or video that
# looped, simulated time restarted): the landmarker and tracker start again.
TIME_RESET_S = 1.0


class FaceMeshNode(ManagedNode):
    """Managed node: configure checks the parameters and loads the landmarker (a missing or
    corrupt model fails the transition), activate subscribes to images and starts the worker,
    deactivate stops both and forgets the tracks, cleanup closes the landmarker."""

    def __init__(self, **kwargs):
        super().__init__("face_mesh", {
            "model_path": "", "num_faces": 8, "min_detection_confidence": 0.5, "min_presence_confidence": 0.5,
            "min_tracking_confidence": 0.5, "max_missed_frames": 15, "min_hits": 2,
            "publish_debug_image": False, "max_image_pixels": 4096 * 4096, "video_mode": True,
            "multi_face": True, "min_face_px": 24, "detect_period_s": 0.25, "new_face_confidence": 0.6,
            "confirm_confidence": 0.65, "landmark_threads": 2, "landmark_views": ["plain"], "appearance": False, "appearance_model": "", "appearance_threads": 2,
            "appearance_precision": "auto",
        }, **kwargs)
        self.appearance = None
        self.landmarker: Landmarker | None = None
        self.pub = self.debug_pub = self.sub = None
        self._worker: threading.Thread | None = None
        self._running = False

    def configure(self) -> None:
        p = self.p
        if p["num_faces"] < 1 or p["max_missed_frames"] < 0 or p["min_hits"] < 1 or p["max_image_pixels"] < 1:
            raise StartupError(f"num_faces and min_hits must be >= 1, max_missed_frames >= 0, max_image_pixels >= 1 (got "
                               f"{p['num_faces']}, {p['min_hits']}, {p['max_missed_frames']}, {p['max_image_pixels']})")
        for k in ("min_detection_confidence", "min_presence_confidence", "min_tracking_confidence"):
            if not 0.0 <= p[k] <= 1.0:
                raise StartupError(f"{k} must be within [0, 1], got {p[k]}")
        try:  # checked in either mode, so that a bad value is found before someone switches modes
            self._multi_config().check()
        except ValueError as e:
            raise StartupError(str(e)) from None
        if p["appearance"]:
            self.appearance = self._load_appearance()
        self.landmarker = self._make_landmarker()  # AssetError: one line, the transition fails
        self.tracker = FaceTracker(max_missed=p["max_missed_frames"], min_hits=p["min_hits"])
        self.pub = self.create_lifecycle_publisher(FaceLandmarksArray, FACES_TOPIC, reliable_qos())
        if p["publish_debug_image"]:
            self.debug_pub = self.create_lifecycle_publisher(Image, DEBUG_IMAGE_TOPIC, SENSOR_QOS)
        finder = (f"tiled detector every {p['detect_period_s']} s, faces from {p['min_face_px']} px" if p["multi_face"]
                  else "the landmarker's own short-range detector")
        mode = (f"appearance mode (face crops -> appearance vectors, {self.appearance.precision} network)"
                if self.appearance else "landmarks only")
        self.get_logger().info(f"face mesh ready: up to {p['num_faces']} faces, {finder}, {mode}, debug image "
                               f"{'on' if self.debug_pub else 'off'}")

    def _load_appearance(self):
        if self.p["appearance_threads"] < 1:
            raise StartupError(f"appearance_threads must be >= 1, got {self.p['appearance_threads']}")
        import torch

        from ..appearance.model import AppearanceModel
        from ..models.lstm import ModelFileError

        torch.set_num_threads(int(self.p["appearance_threads"]))
        try:
            model = AppearanceModel(self.p["appearance_model"] or None, precision=self.p["appearance_precision"])
        except ModelFileError as e:
            raise StartupError(f"appearance mode: {e}") from None
        if model.int8_note:
            self.get_logger().info(f"appearance network in float: {model.int8_note}")
        return model

    def activate(self) -> None:
        self.slot = LatestSlot()
        self._dropped_reported = 0
        self._last_ts_ms = None
        self.tracker.reset()
        self._running = True
        self._worker = threading.Thread(target=self._work, daemon=True)
        self._worker.start()
        self.sub = self.create_subscription(Image, IMAGE_TOPIC, self._on_image, SENSOR_QOS)

    def deactivate(self) -> None:
        if self.sub is not None:
            self.destroy_subscription(self.sub)
            self.sub = None
        self._running = False
        if self._worker is not None:
            self.slot.close()
            self._worker.join(timeout=5.0)
            self._worker = None

    def cleanup(self) -> None:
        if self.landmarker is not None:
            self.landmarker.close()
            self.landmarker = None
        self.appearance = None
        for pub in (self.pub, self.debug_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.pub = self.debug_pub = None

    def _multi_config(self) -> MultiFaceConfig:
        return MultiFaceConfig.from_node_params(self.p, asynchronous=True)

    def _make_landmarker(self) -> Landmarker | MultiFaceLandmarker:
        if self.p["multi_face"]:
            return MultiFaceLandmarker(self.p["model_path"] or None, self._multi_config())
        return Landmarker(self.p["model_path"] or None, num_faces=self.p["num_faces"], video=self.p["video_mode"],
                          min_detection_confidence=self.p["min_detection_confidence"],
                          min_presence_confidence=self.p["min_presence_confidence"],
                          min_tracking_confidence=self.p["min_tracking_confidence"])

    def _on_image(self, msg: Image) -> None:
        self.diag.count("received")
        if self.slot.put(msg):
            self.diag.count("dropped")

    def _bad(self, kind: str, text: str) -> None:
        self.bad_input(kind, text)

    def _work(self) -> None:
        while self._running:
            msg = self.slot.take(timeout=0.5)
            if msg is None:
                continue
            try:
                self._process(msg)
            except Exception as e:  # never let one frame kill the worker
                self._bad("errors", f"frame failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")

    def _process(self, msg: Image) -> None:
        t0 = time.perf_counter()
        try:
            rgb = image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data, self.p["max_image_pixels"])
        except ImageError as e:
            self._bad("bad_images", f"image skipped: {e}")
            return
        ts_ms = msg.header.stamp.sec * 1000 + msg.header.stamp.nanosec // 1_000_000
        if self._last_ts_ms is not None and ts_ms <= self._last_ts_ms:
            if self._last_ts_ms - ts_ms > TIME_RESET_S * 1000:
                self.get_logger().warning(f"image stamps jumped back {(self._last_ts_ms - ts_ms) / 1000:.1f} s: restarting landmarker and tracker")
                self.diag.count("time_resets")
                self.landmarker.close()
                self.landmarker = self._make_landmarker()
                self.tracker.reset()
            else:
                kind = "duplicate_stamps" if ts_ms == self._last_ts_ms else "out_of_order_stamps"
                self._bad(kind, f"image skipped: stamp {ts_ms / 1000:.3f} s is not after the previous frame's ({kind.replace('_', ' ')})")
                return
        self._last_ts_ms = ts_ms
        faces = self.landmarker.detect(rgb, ts_ms if self.p["video_mode"] or self.p["multi_face"] else None)
        ids, scores = self.tracker.update([f.bbox for f in faces], [f.landmarks for f in faces], ts_ms / 1000.0)
        kept = [(f, i, s) for f, i, s in zip(faces, ids, scores) if i]
        out = [face_to_msg(f, i, s, msg.header, msg.width, msg.height) for f, i, s in kept]
        if self.appearance is not None and kept:
            t1 = time.perf_counter()
            emb, logits = self.appearance(rgb, [f.landmarks for f, _, _ in kept])
            for m, e, lg in zip(out, emb, logits):
                set_appearance(m, e, lg, self.appearance.classes)
            self.diag.set("appearance_ms_per_face", round(1000 * (time.perf_counter() - t1) / len(kept), 2))
        dropped = self.slot.dropped - self._dropped_reported
        self._dropped_reported = self.slot.dropped
        dt = time.perf_counter() - t0
        self.pub.publish(make_array(msg.header, msg.width, msg.height, out, dt, dropped))
        self.diag.count("frames")
        self.diag.time(dt)
        self.diag.set("faces", len(out))
        self.diag.set("tracks", len(self.tracker.tracks))
        if self.diag.level != DiagnosticStatus.OK:
            self.diag.status(DiagnosticStatus.OK, "ok")
        if self.debug_pub is not None:
            self.debug_pub.publish(self._debug_image(rgb, faces, ids, msg))

    @staticmethod
    def _debug_image(rgb: np.ndarray, faces, ids, src: Image) -> Image:
        img = rgb.copy()
        h, w = img.shape[:2]
        for f, i in zip(faces, ids):
            for x, y, _ in f.landmarks[::2]:
                cv2.circle(img, (int(x * w), int(y * h)), 1, (0, 255, 0), -1)
            x, y, bw, bh = f.bbox.astype(int)
            cv2.rectangle(img, (x, y), (x + bw, y + bh), (255, 200, 0), 1)
            cv2.putText(img, f"id {i}" if i else "new", (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 200, 0), 1)
        out = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3, data=array.array("B", img.tobytes()))
        out.header = src.header
        return out


def main(args=None) -> int:
    return run_node(FaceMeshNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
