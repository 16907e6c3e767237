"""emotion node: FaceLandmarksArray -> temporal LSTM per tracked face -> EmotionEstimate on /emotion.

Parameters: model_dir ('' = the shipped models/lstm_fer7), hybrid_model_dir ('' = the shipped
hybrid model with the same classes, 'none' = no hybrid), window (0 = the model's), forget_after
(s), max_faces, expect_classes (empty = accept the model's), and the published label's rule
(label_margin, label_hold_s, label_smooth_s, label_evidence: facephi_ros/emotion/label_rule.py;
all 0 = the argmax). Faces that carry an appearance vector
(the face-mesh node's appearance mode) are estimated by the hybrid model, the others by the
landmark model; each estimate's `model` field names the one used. One estimate per face per
processed frame, stamped with the frame's stamp. Bad faces (wrong lengths, NaN/inf,
out-of-order or duplicate stamps) are skipped with one log line and a /diagnostics counter.
"""
from __future__ import annotations

import time
from dataclasses import asdict


from facephi_ros.msg import EmotionEstimate, FaceLandmarksArray

from ..emotion.estimator import EmotionEstimator
from ..emotion.label_rule import LabelRuleConfig
from ..models.lstm import ModelFileError
from .common import (
    EMOTION_TOPIC,
    FACES_TOPIC,
    ManagedNode,
    StartupError,
    reliable_qos,
    run_node,
)
from .convert import MessageError, make_estimate, msg_appearance, msg_to_arrays


RULE = LabelRuleConfig()  # the shipped label rule's defaults


class EmotionNode(ManagedNode):
    """Managed node: configure loads and checks the model (a missing, corrupt or mismatched model
    fails the transition), activate subscribes to landmarks, deactivate unsubscribes and forgets
    every face's window, cleanup frees the model."""

    def __init__(self, **kwargs):
        super().__init__("emotion", {"model_dir": "", "hybrid_model_dir": "", "window": 0, "forget_after": 2.0, "max_faces": 32,
                                     "expect_classes": [""], **{f"label_{k}": v for k, v in asdict(RULE).items()}},
                         **kwargs)
        self.est = self.pub = self.sub = self.timer = None

    def configure(self) -> None:
        p = self.p
        if p["window"] < 0 or not p["forget_after"] > 0 or p["max_faces"] < 1:
            raise StartupError(f"window must be >= 0, forget_after > 0 and max_faces >= 1 (got {p['window']}, "
                               f"{p['forget_after']}, {p['max_faces']})")
        expect = [c for c in p["expect_classes"] if c]
        try:
            rule = LabelRuleConfig(**{k: float(p[f"label_{k}"]) for k in asdict(RULE)})
        except ValueError as e:
            raise StartupError(str(e)) from None
        try:
            self.est = EmotionEstimator(p["model_dir"] or None, p["window"] or None, p["forget_after"], p["max_faces"],
                                        expect or None, label_rule=rule, hybrid_dir=p["hybrid_model_dir"] or None)
        except ModelFileError as e:
            raise StartupError(str(e)) from None
        self.pub = self.create_lifecycle_publisher(EmotionEstimate, EMOTION_TOPIC, reliable_qos(50))
        hybrid = f"hybrid model {self.est.hybrid_name} for faces with appearance vectors" if self.est.hybrid else "no hybrid model"
        self.get_logger().info(f"emotion model {self.est.name}: classes {self.est.classes}, window {self.est.window} frames; {hybrid}")

    def activate(self) -> None:
        self.sub = self.create_subscription(FaceLandmarksArray, FACES_TOPIC, self._on_faces, reliable_qos())
        # forget faces also while no landmarks arrive (a face-mesh restart reuses ids)
        self.timer = self.create_timer(0.5, lambda: self.est.forget())

    def deactivate(self) -> None:
        if self.sub is not None:
            self.destroy_subscription(self.sub)
            self.sub = None
        if self.timer is not None:
            self.destroy_timer(self.timer)
            self.timer = None
        if self.est is not None:
            self.est.reset()

    def cleanup(self) -> None:
        self.est = None
        if self.pub is not None:
            self.destroy_lifecycle_publisher(self.pub)
            self.pub = None

    def _on_faces(self, msg: FaceLandmarksArray) -> None:
        t0 = time.perf_counter()
        t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        faces, seen = [], set()
        for f in msg.faces:
            if f.face_id == 0 or f.face_id in seen:
                self.bad_input("bad_face_ids",
                                 f"face skipped: face id {f.face_id} is {'zero' if f.face_id == 0 else 'repeated in one frame'}")
                continue
            w = self.est.windows.get(f.face_id)
            if w is not None and t <= w.last_t:
                kind = "duplicate_stamps" if t == w.last_t else "out_of_order_stamps"
                self.bad_input(kind,
                                 f"face {f.face_id} skipped: stamp {t:.3f} s is not after its previous frame ({kind.replace('_', ' ')})")
                continue
            try:
                lm, bs, mat = msg_to_arrays(f)
            except MessageError as e:
                self.bad_input("bad_faces", f"face skipped: {e}")
                continue
            try:
                app = msg_appearance(f)
            except MessageError as e:
                self.bad_input("bad_appearance", f"appearance vector ignored: {e}")
                app = None
            seen.add(f.face_id)
            faces.append((f.face_id, lm, bs, mat) + ((app[0], app[1]) if app is not None else ()))
        w, h = max(msg.image_width, 1), max(msg.image_height, 1)
        estimates = self.est.update(faces, w, h, t)
        if self.est.appearance_mismatch:
            self.bad_input("appearance_mismatch", self.est.appearance_mismatch)
            self.est.appearance_mismatch = None
        for e in estimates:
            self.pub.publish(make_estimate(msg.header, e.face_id, e.model, self.est.classes, e.probs, e.valence,
                                           e.arousal, "", e.window_frames, label=e.label))
        self.diag.count("frames")
        self.diag.count("estimates", len(faces))
        self.diag.time(time.perf_counter() - t0)
        self.diag.set("faces_tracked", len(self.est.windows))


def main(args=None) -> int:
    return run_node(EmotionNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
