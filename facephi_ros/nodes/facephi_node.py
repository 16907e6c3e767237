"""facephi node: FaceLandmarksArray -> FacePhi (landmark encoder + LLM) -> /emotion/description.

The language model is slow next to the 30 Hz pipeline, so this node never holds it up: the
subscription callback only stores the newest landmarks of each face in a bounded table (a newer
frame of a face replaces the waiting one: the newest face wins; beyond `max_faces` the oldest
waiting face is dropped) and a worker thread answers one face at a time, at most `rate_hz`
answers per second. With `only_on_change` it answers a face only when the LSTM's label for it
on /emotion changes (and once at first sight).

Pooling: the node also keeps each face's last `pool_frames` frames (within `pool_seconds` of
its newest one; a bounded table like the waiting faces) and the answer reads the mean encoder
feature of those frames, which averages out the landmarker's frame-to-frame jitter
(pool_frames = 1: the newest frame alone).

Each answer is an EmotionEstimate stamped with its source frame: the likelihood-mode class
distribution (probabilities, label, confidence, derived valence/arousal) and, in `description`,
  mode 'answer' (default): the LLM's own one-sentence answer;
  mode 'label': nothing (fastest: label and distribution only);
  mode 'va': a free-text description written from valence, arousal, the label and the
             strongest blendshapes (the LSTM's valence/arousal when it has seen the face).
Parameters: model_dir ('' = shipped models/facephi), llm ('' = the one it was trained with),
mode, rate_hz, max_faces, only_on_change, pool_frames, pool_seconds, max_new_tokens, device,
threads, dtype, nice (CPU priority offset, 10 by default: the pipeline's other nodes come first).
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from facephi_ros.msg import EmotionEstimate, FaceLandmarksArray

from ..assets import AssetError
from ..emotion.valence_arousal import valence_arousal
from ..facephi.runtime import POOL_FRAMES
from ..landmarks.landmarker import BLENDSHAPE_NAMES
from ..models.lstm import ModelFileError
from .common import (
    DESCRIPTION_TOPIC,
    EMOTION_TOPIC,
    FACES_TOPIC,
    ManagedNode,
    StartupError,
    reliable_qos,
    run_node,
)
from .convert import MessageError, make_estimate, msg_to_arrays

MODES = ("answer", "label", "va")


@dataclass(eq=False)  # identity: frames hold arrays
class Pending:
    header: object
    landmarks: np.ndarray
    blendshapes: np.ndarray
    matrix: np.ndarray
    width: int
    height: int
    received: float


class FacePhiNode(ManagedNode):
    """Managed node: configure checks the parameters and loads FacePhi (encoder, projector, LLM;
    a missing model fails the transition), activate subscribes and starts the answering worker,
    deactivate stops both and drops waiting faces, cleanup frees the models."""

    def __init__(self, **kwargs):
        super().__init__("facephi", {
            "model_dir": "", "llm": "", "mode": "answer", "rate_hz": 2.0, "max_faces": 8, "only_on_change": False,
            "pool_frames": POOL_FRAMES, "pool_seconds": 0.5, "max_new_tokens": 16, "device": "auto", "threads": 0,
            "dtype": "auto", "nice": 10}, **kwargs)
        # The language model is the least urgent work on the robot: a lower CPU priority keeps the
        # 30 Hz face mesh and /emotion at their rate while FacePhi loads (a respawn) or answers.
        if self.p["nice"] > 0:
            try:
                os.nice(self.p["nice"])  # this thread; the model's threads, started later, inherit it
            except OSError as e:
                self.get_logger().warning(f"nice {self.p['nice']} not applied: {e}")
        self.rt = self.pub = self.sub = self.sub_lstm = self.worker = None
        self.lock = threading.Condition()
        self.stop = threading.Event()

    def configure(self) -> None:
        p = self.p
        if p["mode"] not in MODES:
            raise StartupError(f"mode must be one of {MODES}, got '{p['mode']}'")
        if not p["rate_hz"] > 0 or p["max_faces"] < 1 or p["pool_frames"] < 1 or not p["pool_seconds"] >= 0:
            raise StartupError(f"rate_hz must be > 0, max_faces and pool_frames >= 1, pool_seconds >= 0 (got {p['rate_hz']}, "
                               f"{p['max_faces']}, {p['pool_frames']}, {p['pool_seconds']})")
        try:
            from ..facephi.runtime import FacePhiRuntime
            t0 = time.monotonic()
            self.rt = FacePhiRuntime(p["model_dir"] or None, p["llm"], p["device"], p["threads"], p["dtype"])
        except (ModelFileError, AssetError, ValueError) as e:
            raise StartupError(str(e)) from None
        self.pub = self.create_lifecycle_publisher(EmotionEstimate, DESCRIPTION_TOPIC, reliable_qos(20))
        self.get_logger().info(f"{self.rt.name} ready in {time.monotonic() - t0:.1f} s: mode {p['mode']}, "
                               f"at most {p['rate_hz']} answers/s, classes {self.rt.classes}")

    def activate(self) -> None:
        self.pending: OrderedDict[int, Pending] = OrderedDict()
        self.recent: OrderedDict[int, deque[Pending]] = OrderedDict()  # face -> its last frames (pooling)
        self.lstm: dict[int, tuple[str, float, float, float]] = {}  # face -> (label, valence, arousal, time)
        self.answered_label: dict[int, str] = {}
        self.stop.clear()
        self.worker = threading.Thread(target=self._work, name="facephi-worker", daemon=True)
        self.worker.start()
        self.sub = self.create_subscription(FaceLandmarksArray, FACES_TOPIC, self._on_faces, reliable_qos())
        self.sub_lstm = self.create_subscription(EmotionEstimate, EMOTION_TOPIC, self._on_lstm, reliable_qos(50))

    def deactivate(self) -> None:
        for sub in (self.sub, self.sub_lstm):
            if sub is not None:
                self.destroy_subscription(sub)
        self.sub = self.sub_lstm = None
        self.stop.set()
        with self.lock:
            self.lock.notify_all()
        if self.worker is not None:
            self.worker.join(timeout=10)  # an answer in progress finishes first
            self.worker = None

    def cleanup(self) -> None:
        self.rt = None
        if self.pub is not None:
            self.destroy_lifecycle_publisher(self.pub)
            self.pub = None

    # -- callbacks: cheap, never wait for the model -------------------------------------------
    def _on_lstm(self, msg: EmotionEstimate) -> None:
        with self.lock:
            self.lstm[msg.face_id] = (msg.label, msg.valence, msg.arousal, time.monotonic())
            if len(self.lstm) > 4 * self.p["max_faces"]:
                self.lstm.pop(min(self.lstm, key=lambda k: self.lstm[k][3]))
            if self.p["only_on_change"]:
                self.lock.notify()

    def _on_faces(self, msg: FaceLandmarksArray) -> None:
        now = time.monotonic()
        for f in msg.faces:
            try:
                lm, bs, mat = msg_to_arrays(f)
            except MessageError as e:
                self.bad_input("bad_faces", f"face skipped: {e}")
                continue
            item = Pending(msg.header, lm, bs, mat, max(msg.image_width, 1), max(msg.image_height, 1), now)
            with self.lock:
                if f.face_id in self.pending:
                    self.diag.count("superseded")  # the newest face wins
                    del self.pending[f.face_id]
                self.pending[f.face_id] = item
                self._remember(f.face_id, item)
                while len(self.pending) > self.p["max_faces"]:
                    self.pending.popitem(last=False)
                    self.diag.count("dropped")
                self.lock.notify()
        self.diag.count("frames")
        self.diag.set("waiting_faces", len(self.pending))

    def _remember(self, face_id: int, item: Pending) -> None:
        """Keep the face's last frames for pooling (caller holds the lock); bounded in faces and frames."""
        frames = self.recent.pop(face_id, None) or deque(maxlen=self.p["pool_frames"])
        frames.append(item)
        self.recent[face_id] = frames  # most recently seen last
        while len(self.recent) > 4 * self.p["max_faces"]:
            self.recent.popitem(last=False)

    def _pool(self, face_id: int, item: Pending) -> list[Pending]:
        """The frames to pool for an answer: the face's recent frames up to `item`, within pool_seconds of it."""
        with self.lock:
            frames = list(self.recent.get(face_id, ()))
        keep = [f for f in frames if f.received <= item.received and item.received - f.received <= self.p["pool_seconds"]
                and (f.width, f.height) == (item.width, item.height)]
        return keep if item in keep else keep + [item]

    # -- worker ---------------------------------------------------------------------------
    def _eligible(self, face_id: int) -> bool:
        if not self.p["only_on_change"]:
            return True
        seen = self.lstm.get(face_id)
        if seen is None:
            return face_id not in self.answered_label  # once at first sight
        return self.answered_label.get(face_id) != seen[0]

    def _take(self) -> tuple[int, Pending] | None:
        with self.lock:
            while not self.stop.is_set():
                ready = [k for k in self.pending if self._eligible(k)]
                if ready:
                    return ready[0], self.pending.pop(ready[0])  # the longest-waiting face first
                self.lock.wait(0.2)
        return None

    def _work(self) -> None:
        period = 1.0 / self.p["rate_hz"]
        last = 0.0
        while not self.stop.is_set():
            wait = last + period - time.monotonic()
            if wait > 0 and self.stop.wait(wait):
                return
            got = self._take()
            if got is None:
                return
            last = time.monotonic()
            face_id, item = got
            try:
                self._answer(face_id, item)
            except (ValueError, RuntimeError) as e:
                self.bad_input("failed_answers", f"face {face_id}: no answer ({str(e).splitlines()[0][:160]})")

    def _answer(self, face_id: int, item: Pending) -> None:
        t0 = time.perf_counter()
        rt = self.rt
        frames = self._pool(face_id, item)
        feats = rt.pooled_features([(f.landmarks, f.matrix, f.blendshapes) for f in frames], item.width, item.height)
        probs = rt.model.class_probs(feats)[0].cpu().numpy()
        label = rt.classes[int(np.argmax(probs))]
        valence, arousal = valence_arousal(probs, rt.classes)
        text = ""
        if self.p["mode"] == "answer":
            text = rt.model.generate(feats, max_new_tokens=self.p["max_new_tokens"])[0]
        elif self.p["mode"] == "va":
            with self.lock:
                seen = self.lstm.get(face_id)
            if seen is not None and np.isfinite(seen[1]) and np.isfinite(seen[2]):
                valence, arousal = seen[1], seen[2]
            text = rt.describe_va(valence, arousal, label, dict(zip(BLENDSHAPE_NAMES, item.blendshapes.tolist())))
        self.pub.publish(make_estimate(item.header, face_id, rt.name, rt.classes, probs, valence, arousal, text, 1))
        with self.lock:
            seen = self.lstm.get(face_id)
            self.answered_label[face_id] = seen[0] if seen else label
            if len(self.answered_label) > 4 * self.p["max_faces"]:
                self.answered_label.pop(next(iter(self.answered_label)))
        self.diag.count("answers")
        self.diag.set("pooled_frames", len(frames))
        self.diag.time(time.perf_counter() - t0)
        self.diag.set("answer_age_ms", round(1000 * (time.monotonic() - item.received), 1))


def main(args=None) -> int:
    return run_node(FacePhiNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
