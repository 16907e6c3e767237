"""Core dataclasses <-> facephi_ros messages (needs the generated message classes, not rclpy)."""
from __future__ import annotations

import array

import numpy as np

from facephi_ros.msg import EmotionEstimate, FaceLandmarks, FaceLandmarksArray

from ..landmarks.landmarker import (
    BLENDSHAPE_NAMES,
    NUM_BLENDSHAPES,
    NUM_LANDMARKS,
    FaceMesh,
)

_NAMES = list(BLENDSHAPE_NAMES)


class MessageError(ValueError):
    """A message whose content cannot be used; str() is one line."""


def face_to_msg(face: FaceMesh, face_id: int, score: float, header, width: int, height: int) -> FaceLandmarks:
    m = FaceLandmarks()
    m.header = header
    m.face_id = int(face_id)
    m.image_width, m.image_height = int(width), int(height)
    m.landmarks = array.array("f", np.ascontiguousarray(face.landmarks, np.float32).tobytes())
    m.blendshapes = np.ascontiguousarray(face.blendshapes, np.float32)
    m.blendshape_names = _NAMES
    m.transformation_matrix = np.ascontiguousarray(face.matrix, np.float64).ravel()
    m.bbox_x, m.bbox_y, m.bbox_width, m.bbox_height = (float(v) for v in face.bbox)
    m.detection_score = float(score)
    return m


def set_appearance(m: FaceLandmarks, embedding: np.ndarray, logits: np.ndarray, classes) -> FaceLandmarks:
    """Fill the appearance-mode fields of a FaceLandmarks (numbers only)."""
    m.appearance_embedding = array.array("f", np.ascontiguousarray(embedding, np.float32).tobytes())
    m.appearance_logits = array.array("f", np.ascontiguousarray(logits, np.float32).tobytes())
    m.appearance_classes = list(classes)
    return m


def msg_appearance(m: FaceLandmarks) -> tuple[np.ndarray, list[str]] | None:
    """(embedding then logits as one float32 vector, the logits' classes) of a face in appearance
    mode, None when the message carries none; MessageError for NaN/inf or logits that do not
    match their class list."""
    if not len(m.appearance_embedding):
        return None
    emb = np.asarray(m.appearance_embedding, np.float32)
    logits = np.asarray(m.appearance_logits, np.float32)
    if logits.size != len(m.appearance_classes):
        raise MessageError(f"face {m.face_id}: {logits.size} appearance logits for {len(m.appearance_classes)} classes")
    if not (np.isfinite(emb).all() and np.isfinite(logits).all()):
        raise MessageError(f"face {m.face_id}: NaN or inf in the appearance vector")
    return np.concatenate([emb, logits]), list(m.appearance_classes)


def msg_to_arrays(m: FaceLandmarks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(landmarks (478, 3), blendshapes (52,), matrix (4, 4)) with validation: MessageError on
    wrong lengths or non-finite values."""
    lm = np.frombuffer(m.landmarks, np.float32) if isinstance(m.landmarks, array.array) else np.asarray(m.landmarks, np.float32)
    if lm.size != NUM_LANDMARKS * 3:
        raise MessageError(f"face {m.face_id}: {lm.size} landmark values, expected {NUM_LANDMARKS * 3}")
    bs = np.asarray(m.blendshapes, np.float32)
    if bs.size != NUM_BLENDSHAPES:
        raise MessageError(f"face {m.face_id}: {bs.size} blendshapes, expected {NUM_BLENDSHAPES}")
    mat = np.asarray(m.transformation_matrix, np.float64).reshape(4, 4)
    if not (np.isfinite(lm).all() and np.isfinite(bs).all() and np.isfinite(mat).all()):
        raise MessageError(f"face {m.face_id}: NaN or inf in landmarks, blendshapes or matrix")
    if m.blendshape_names and list(m.blendshape_names) != _NAMES:
        raise MessageError(f"face {m.face_id}: blendshape names differ from MediaPipe's 52 (first: {list(m.blendshape_names)[:2]})")
    return lm.reshape(NUM_LANDMARKS, 3), bs, mat


def make_array(header, width: int, height: int, faces: list[FaceLandmarks], processing_time: float, dropped: int) -> FaceLandmarksArray:
    a = FaceLandmarksArray()
    a.header = header
    a.image_width, a.image_height = int(width), int(height)
    a.processing_time = float(processing_time)
    a.dropped_frames = int(dropped)
    a.faces = faces
    return a


def make_estimate(header, face_id: int, model: str, class_names, probs, valence=float("nan"), arousal=float("nan"),
                  description: str = "", window_frames: int = 1, label: str | None = None) -> EmotionEstimate:
    """label: the published label (the emotion node's label rule); None = the most probable class.
    confidence is the probability of the published label."""
    probs = np.asarray(probs, np.float32)
    e = EmotionEstimate()
    e.header = header
    e.face_id = int(face_id)
    e.model = model
    e.class_names = list(class_names)
    e.probabilities = array.array("f", probs.tobytes())
    k = list(class_names).index(label) if label is not None else (int(np.argmax(probs)) if probs.size else 0)
    e.label = class_names[k] if probs.size else ""
    e.confidence = float(probs[k]) if probs.size else 0.0
    e.valence, e.arousal = float(valence), float(arousal)
    e.description = description
    e.window_frames = int(window_frames)
    return e
