"""Every face in the frame, near or far: a tiled face detector finds faces, MediaPipe landmarks
each one in a crop of its own.

MediaPipe's FaceLandmarker finds faces with the short-range BlazeFace detector, which sees the
whole image at 128x128: in a group or at 2-4 m most faces are too small for it (2 of the 5 faces
of multi_face.jpg). The landmark model itself is fine on small faces once they fill its input.
So this module splits the two jobs (docs/faces.md has the measurements behind each choice):

* Detection: the same BlazeFace network (the face_detector.tflite inside the sha256-checked
  face_landmarker.task bundle, read from it in memory: no second model file) runs on the whole
  frame and on overlapping square tiles. A face of `min_face_px` fills about an eighth of a tile,
  where the detector is reliable; a face too big for a tile is found in the whole frame. A scan
  runs every `detect_period_s` in a thread of its own (the node), coarse windows first, and
  hands over the faces of each finished level at once, so a face that walks in waits for the
  few coarse windows that see it, not for the whole scan. Overlapping boxes from different
  windows are merged by non-maximum suppression.
* Landmarks: each face is cut out as a square crop around its box (`crop_scale` times the box),
  resized to `crop_px` (small faces are upscaled, as the training data's 48x48 images are) and
  given to the FaceLandmarker in IMAGE mode. Landmarks come back in full-image coordinates with
  the meaning of MediaPipe's own (x, y normalised by the frame, z in the scale of x). The faces
  of a frame are landmarked `landmark_threads` at a time, each thread with a landmarker of its
  own (MediaPipe releases the GIL while it runs): with 2 threads an extra face costs about half
  the wall time, with the same landmarks.
* Views (`views`, landmarks/views.py): a tracked face's crop can be cut a different way on
  successive frames (mirrored, a little tighter or wider), as the training images are rendered;
  a mirrored crop's mesh is mirrored back.
* Tracking: a face's landmarks in one frame give its crop in the next, as MediaPipe's own
  VIDEO mode does inside one image; the detector only has to find faces that walk in. Two crops
  that land on the same face are merged.

Pure Python + MediaPipe; no ROS import.
"""
from __future__ import annotations

import os
import queue
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..assets import AssetError, require
from .landmarker import SMALL_IMAGE_PAD, SMALL_IMAGE_UPSCALE, FaceMesh, Landmarker, mesh_bbox
from .views import CropView, flipped, parse_views, unflip, view_names

DETECTOR_MEMBER = "face_detector.tflite"


@dataclass(frozen=True)
class MultiFaceConfig:
    """What the face-mesh node exposes as parameters (config/facephi.yaml explains each)."""
    max_faces: int = 8  # faces landmarked per frame (tracked ones first)
    min_face_px: int = 32  # smaller faces (box side, pixels) are ignored
    detect_period_s: float = 0.25  # a detector scan starts at most this often (stream time)
    asynchronous: bool = False  # scans run in a thread of their own (the node: true)
    scan_nice: int = 10  # asynchronous scans run at this lower CPU priority (0: unchanged)
    max_scan_share: float = 0.33  # asynchronous scans wait so as to use at most this share of a core
    min_detection_confidence: float = 0.6  # detector score for a new face (0.5: 3.5x the false detections in an
                                           # empty room for 0.4 points more faces found, FER2013 training faces)
    min_presence_confidence: float = 0.5  # landmarker's own threshold inside a crop
    confirm_confidence: float = 0.65  # a new face is kept only if the detector, run once more on a crop
                                      # centred on its mesh, scores it this high (0: no check). Empty-room
                                      # false faces scored at most 0.59 there, 99.2% of real new faces 0.65+
    crop_scale: float = 1.8  # crop side / face box side
    retry_scale: float = 2.4  # when the landmarker finds no face in that crop, one more try this wide (0: none)
    crop_px: int = 192  # crop side fed to the landmarker
    upscale_sharpen: float = 0.0  # unsharp mask (amount; radius one frame pixel) on the upscaled crops the landmarks
                                  # come from (not the new-face check's). 0: none; 1.0 gained 0.4 points on small
                                  # faces, within the noise (docs/faces.md): off
    padded_crop_below_px: int = 0  # faces whose box side is below this are cut as the training images are
                                   # prepared (padded_crop; 0: never)
    tile_fraction: float = 0.16  # the smallest face fills this fraction of a tile's side
    duplicate_iou: float = 0.4  # two faces overlapping more than this are one face
    landmark_threads: int = 2  # the faces of one frame are landmarked this many at a time (one landmarker each)
    views: tuple[str, ...] = ("plain",)  # crop views taken in turn, one per frame (landmarks/views.py)

    @classmethod
    def from_node_params(cls, params: dict, **over) -> "MultiFaceConfig":
        """The configuration the face-mesh node builds from its parameters (config/facephi.yaml's
        face_mesh section, or the node's own), with `over` on top. Views may be given as a list of
        names or a comma-separated string, in the parameters or in `over`."""
        p = params
        views = view_names(over.pop("views", p.get("landmark_views", cls.views)))
        return cls(**{"max_faces": p["num_faces"], "min_face_px": p["min_face_px"], "detect_period_s": p["detect_period_s"],
                      "min_detection_confidence": p["new_face_confidence"],
                      "min_presence_confidence": p["min_presence_confidence"],
                      "confirm_confidence": p["confirm_confidence"], "landmark_threads": p["landmark_threads"],
                      "views": views, **over})

    @classmethod
    def from_config_file(cls, path: str | Path | None = None, **over) -> "MultiFaceConfig":
        """The node's configuration as the shipped config/facephi.yaml (or `path`) sets it: what
        offline tools use to landmark as the node does."""
        import yaml

        from ..paths import shipped

        path = Path(path) if path else shipped("config") / "facephi.yaml"
        return cls.from_node_params(yaml.safe_load(path.read_text())["face_mesh"]["ros__parameters"], **over)

    def check(self) -> None:
        if self.max_faces < 1 or self.min_face_px < 8 or self.crop_px < 64 or not self.detect_period_s >= 0:
            raise ValueError(f"max_faces must be >= 1, min_face_px >= 8, crop_px >= 64, detect_period_s >= 0 (got "
                             f"{self.max_faces}, {self.min_face_px}, {self.crop_px}, {self.detect_period_s})")
        parse_views(self.views)
        if not 1 <= self.landmark_threads <= 16:
            raise ValueError(f"landmark_threads must be within [1, 16], got {self.landmark_threads}")
        if not 0 <= self.scan_nice <= 19 or not 0.01 <= self.max_scan_share <= 1.0:
            raise ValueError(f"scan_nice must be within [0, 19] and max_scan_share within [0.01, 1] "
                             f"(got {self.scan_nice}, {self.max_scan_share})")
        if self.retry_scale and not 1.0 <= self.retry_scale <= 4.0:
            raise ValueError(f"retry_scale must be 0 or within [1, 4], got {self.retry_scale}")
        if not 1.0 <= self.crop_scale <= 4.0 or not 0.05 <= self.tile_fraction <= 0.5:
            raise ValueError(f"crop_scale must be within [1, 4] and tile_fraction within [0.05, 0.5] "
                             f"(got {self.crop_scale}, {self.tile_fraction})")
        for k in ("min_detection_confidence", "min_presence_confidence", "confirm_confidence", "duplicate_iou"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ValueError(f"{k} must be within [0, 1], got {getattr(self, k)}")


def detector_model_bytes(bundle: Path) -> bytes:
    """The BlazeFace detector inside a face_landmarker.task bundle (a zip)."""
    try:
        with zipfile.ZipFile(bundle) as z:
            return z.read(DETECTOR_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise AssetError(f"no {DETECTOR_MEMBER} in {bundle} ({e}): run `bash scripts/setup.sh`") from None


def tile_windows(width: int, height: int, min_face_px: int, tile_fraction: float, overlap: float = 0.4) -> list[tuple[int, int, int]]:
    """Detector windows (x, y, side) covering a frame: a pyramid of overlapping square tiles, then
    the whole frame (side 0). The finest tiles make a face of min_face_px fill tile_fraction of
    their side; each coarser level doubles the side. Neighbouring tiles overlap by `overlap` of a
    side, so a face up to that size lies whole inside one tile of its level; a bigger one fills
    at least tile_fraction of the next level's tiles (overlap >= 2 * tile_fraction)."""
    side = int(round(min_face_px / tile_fraction))
    windows: list[tuple[int, int, int]] = []
    while side * 1.2 < min(width, height):
        stride = side * (1 - overlap)

        def starts(n: int) -> list[int]:
            k = int(np.ceil((n - side) / stride)) + 1
            return [int(round(i * (n - side) / (k - 1))) for i in range(k)] if k > 1 else [0]

        windows += [(x, y, side) for y in starts(height) for x in starts(width)]
        side *= 2
    return windows + [(0, 0, 0)]


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0.0, min(ax1, bx1) - max(a[0], b[0])), max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def suppress(boxes: list[np.ndarray], scores: list[float], iou: float) -> list[int]:
    """Indices kept by non-maximum suppression, best score first."""
    keep: list[int] = []
    for i in np.argsort(-np.asarray(scores, np.float64)):
        if all(box_iou(boxes[i], boxes[k]) <= iou and not _inside(boxes[i], boxes[k]) for k in keep):
            keep.append(int(i))
    return keep


def _inside(a: np.ndarray, b: np.ndarray) -> bool:
    """The centre of either box lies inside the other (a half-cut face at a tile's edge)."""
    ca, cb = a[:2] + a[2:4] / 2, b[:2] + b[2:4] / 2
    return bool((b[0] <= ca[0] <= b[0] + b[2] and b[1] <= ca[1] <= b[1] + b[3])
                or (a[0] <= cb[0] <= a[0] + a[2] and a[1] <= cb[1] <= a[1] + a[3]))


def part_of(small: np.ndarray, big: np.ndarray, margin: float = 0.25) -> bool:
    """A box at most half the size of another whose centre lies within that one's box widened
    by `margin` of its side: part of the bigger face (an ear, hair) that a fine tile took for a
    face of its own. Seen on 45-m7-di-ph.jpg: a 94 px "face" on the ear of a 262 px face."""
    s_small, s_big = max(small[2], small[3]), max(big[2], big[3])
    if s_big < 2 * s_small:
        return False
    cx, cy = small[0] + small[2] / 2, small[1] + small[3] / 2
    m = margin * s_big
    return bool(big[0] - m <= cx <= big[0] + big[2] + m and big[1] - m <= cy <= big[1] + big[3] + m)


class TiledDetector:
    """BlazeFace (short range) over the whole frame and tiles; boxes in pixels (x, y, w, h)."""

    def __init__(self, model: bytes, min_confidence: float = 0.5, nice: int = 0):
        """nice > 0 lowers the CPU priority of the threads MediaPipe starts for this detector
        (its graph runs in threads of its own; Linux keeps a nice value per thread), so that
        background scans yield to the frames' own work when the CPU is short."""
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = __import__("mediapipe")
        opts = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=model),
                                          min_detection_confidence=min_confidence)
        before = _thread_ids()
        self._det = vision.FaceDetector.create_from_options(opts)
        self.niced = _renice(_thread_ids() - before, nice) if nice > 0 else 0

    def run(self, rgb: np.ndarray, window: tuple[int, int, int]) -> list[tuple[np.ndarray, float]]:
        x, y, side = window
        img = rgb if side == 0 else rgb[y:y + side, x:x + side]
        res = self._det.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(img)))
        out = []
        for d in res.detections:
            b = d.bounding_box
            out.append((np.array([b.origin_x + x, b.origin_y + y, b.width, b.height], np.float32),
                        float(d.categories[0].score) if d.categories else 0.0))
        return out

    def close(self) -> None:
        if getattr(self, "_det", None) is not None:
            self._det.close()
            self._det = None


def _thread_ids() -> set[int]:
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:  # not Linux: no per-thread priorities to set
        return set()


def _renice(tids: set[int], nice: int) -> int:
    """Raise the nice value of these threads (never needs privileges); returns how many."""
    done = 0
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
            done += 1
        except OSError:  # a thread that has already ended
            pass
    return done


def square_crop(rgb: np.ndarray, box: np.ndarray, scale: float, out_px: int,
                sharpen: float = 0.0) -> tuple[np.ndarray, int, int, int] | None:
    """A square of side scale * max(box w, h) around the box's centre, black outside the frame,
    resized to out_px (bicubic up, area down). Returns (crop, x0, y0, side) in frame pixels, or
    None when the square misses the frame."""
    h, w = rgb.shape[:2]
    side = max(int(round(max(box[2], box[3]) * scale)), 1)
    x0, y0 = int(round(box[0] + box[2] / 2 - side / 2)), int(round(box[1] + box[3] / 2 - side / 2))
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 <= sx0 or sy1 <= sy0:
        return None
    sub = rgb[sy0:sy1, sx0:sx1]
    if (sx0, sy0, sx1, sy1) != (x0, y0, x0 + side, y0 + side):
        sub = cv2.copyMakeBorder(sub, sy0 - y0, y0 + side - sy1, sx0 - x0, x0 + side - sx1, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    crop = cv2.resize(sub, (out_px, out_px), interpolation=cv2.INTER_CUBIC if side < out_px else cv2.INTER_AREA)
    if sharpen > 0 and side < out_px:
        blur = cv2.GaussianBlur(crop, (0, 0), sigmaX=out_px / side)  # one frame pixel
        crop = cv2.addWeighted(crop, 1.0 + sharpen, blur, -sharpen, 0)
    return crop, x0, y0, side


# A FER2013 image (what the landmark models are trained on) spans about 1.09 times its face's
# landmark box, centred 4.5% of its side above the box's centre (medians over the test split's
# faces, runs/features/fer2013/test.npz).
IMAGE_PER_BOX = 1.09
IMAGE_CENTRE_ABOVE_BOX = 0.045


def padded_crop(rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float, float, float] | None:
    """A small face framed as the training data frames its 48x48 images: the square a FER2013
    image would span around this landmark box, upscaled bicubically to SMALL_IMAGE_UPSCALE and
    padded with black by SMALL_IMAGE_PAD on every side (prepare_small_image). Returns (crop, x0,
    y0, side) of the whole padded square in frame pixels (the border counts as frame outside the
    cut), or None when the square misses the frame."""
    side = max(box[2], box[3]) * IMAGE_PER_BOX
    centred = np.array([box[0] + box[2] / 2 - side / 2, box[1] + box[3] / 2 - side / 2 - IMAGE_CENTRE_ABOVE_BOX * side,
                        side, side], np.float32)
    cut = square_crop(rgb, centred, 1.0, SMALL_IMAGE_UPSCALE)
    if cut is None:
        return None
    crop, x0, y0, s = cut
    pad = int(round(SMALL_IMAGE_UPSCALE * SMALL_IMAGE_PAD))
    crop = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    k = s / SMALL_IMAGE_UPSCALE  # frame pixels per crop pixel
    return crop, x0 - pad * k, y0 - pad * k, s + 2 * pad * k


def to_frame(mesh: FaceMesh, x0: float, y0: float, side: float, width: int, height: int) -> FaceMesh:
    """A mesh found in a square crop (x0, y0, side in frame pixels) in full-frame terms.

    x, y are renormalised to the frame; z keeps MediaPipe's convention (the scale of x). The
    rotation block of the pose matrix is the crop's, which differs from the frame's by the small
    perspective of an off-centre crop; its translation is the crop camera's (the features use
    only the rotation)."""
    lm = mesh.landmarks.astype(np.float32, copy=True)
    lm[:, 0] = (x0 + lm[:, 0] * side) / width
    lm[:, 1] = (y0 + lm[:, 1] * side) / height
    lm[:, 2] = lm[:, 2] * side / width
    return FaceMesh(lm, mesh.blendshapes, mesh.matrix, mesh_bbox(lm, width, height))


class MultiFaceLandmarker:
    """Finds, landmarks and follows every face in a stream of frames. detect(rgb, timestamp_ms)
    -> [FaceMesh] in full-frame coordinates, like Landmarker.detect. Call it from one thread;
    close() when done.

    A detector scan (every window of tile_windows) starts at the first frame, then every
    detect_period_s of stream time, and at once when a tracked face is lost. Synchronous (the default, and what still images need), the
    scan runs inside detect() on that frame. Asynchronous, it runs in a thread of its own on the
    newest frame handed to it, and its faces join the next detect() call: the frames in between
    pay only for their landmarks. Faces already tracked are never detected twice."""

    def __init__(self, model_path: str | Path | None = None, config: MultiFaceConfig = MultiFaceConfig()):
        config.check()
        self.cfg = config
        self._views = parse_views(config.views)
        self._frame = 0  # frames landmarked: picks each frame's view
        path = require("face_landmarker", model_path)
        self._detector = self._confirmer = self._thread = self._pool = None
        self._landmarkers: list[Landmarker] = []
        self._free: queue.SimpleQueue[Landmarker] = queue.SimpleQueue()  # landmarkers not in use by a thread
        try:
            for _ in range(config.landmark_threads):  # MediaPipe releases the GIL: crops run side by side
                self._landmarkers.append(Landmarker(path, num_faces=1, video=False, min_detection_confidence=0.5,
                                                    min_presence_confidence=config.min_presence_confidence))
                self._free.put(self._landmarkers[-1])
            if config.landmark_threads > 1:
                self._pool = ThreadPoolExecutor(config.landmark_threads, thread_name_prefix="face-landmarks")
            model = detector_model_bytes(path)
            self._detector = TiledDetector(model, config.min_detection_confidence,
                                           nice=config.scan_nice if config.asynchronous else 0)
            if config.confirm_confidence > 0:  # called from detect()'s thread, never the scan thread's
                self._confirmer = TiledDetector(model, config.confirm_confidence)
        except Exception:
            self.close()
            raise
        self.regions: list[np.ndarray] = []  # boxes (x, y, w, h) of the faces found in the last frame
        self._windows: list[tuple[int, int, int]] = []
        self._size = (0, 0)
        self._last_scan_ms: float | None = None
        self.stats = {"scans": 0, "windows": 0, "crops": 0, "scan_ms": 0.0, "unconfirmed": 0}
        self._lock = threading.Lock()
        self._found: list[tuple[np.ndarray, float]] = []  # an asynchronous scan's result, not yet used
        self._job: np.ndarray | None = None
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._thread = None
        self._scan_ready_at = 0.0  # monotonic time before which no asynchronous scan starts
        self._lost = False  # a tracked face was lost in the last frame: scan now
        if config.asynchronous:
            self._thread = threading.Thread(target=self._scan_loop, name="face-detector", daemon=True)
            self._thread.start()

    def reset(self) -> None:
        """Forget tracked faces and scan the next frame (a new scene, or time that jumped)."""
        with self._lock:
            self.regions = []
            self._found = []
            self._last_scan_ms = None
            self._frame = 0

    def windows(self, width: int, height: int) -> list[tuple[int, int, int]]:
        if (width, height) != self._size:
            self._size = (width, height)
            # coarse first: the whole frame, then ever smaller tiles (most faces are found by the
            # few coarse windows; the many fine tiles only add the smallest)
            wins = tile_windows(width, height, self.cfg.min_face_px, self.cfg.tile_fraction)
            self._windows = sorted(wins, key=lambda w: -(w[2] or max(width, height) * 2))
        return self._windows

    def _merged(self, found: list[tuple[np.ndarray, float]]) -> list[tuple[np.ndarray, float]]:
        """Detections of one scan -> one box per face: too small ones dropped, overlapping ones
        suppressed, a box that is part of a bigger face dropped."""
        found = [(b, sc) for b, sc in found if min(b[2], b[3]) >= self.cfg.min_face_px * 0.8]
        keep = suppress([b for b, _ in found], [sc for _, sc in found], self.cfg.duplicate_iou)
        keep = [i for i in keep if not any(part_of(found[i][0], found[j][0]) for j in keep if j != i)]
        return [found[i] for i in keep]

    def _scan(self, rgb: np.ndarray, publish=None) -> list[tuple[np.ndarray, float]]:
        """All faces the detector finds in the frame. publish(faces), when given, is called after
        each level of windows with the faces found so far that it has not been given yet."""
        t0 = time.perf_counter()
        wins = self.windows(rgb.shape[1], rgb.shape[0])
        found: list[tuple[np.ndarray, float]] = []
        sent: list[np.ndarray] = []

        def unsent() -> list[tuple[np.ndarray, float]]:  # the faces found so far that publish() has not had
            return [f for f in self._merged(found) if not any(box_iou(f[0], b) > 0.2 for b in sent)]

        for k, win in enumerate(wins):
            found += self._detector.run(rgb, win)
            if publish is not None and k + 1 < len(wins) and wins[k + 1][2] != win[2]:  # a level is done
                new = unsent()
                if new:
                    publish(new)
                    sent += [b for b, _ in new]
        self.stats["scans"] += 1
        self.stats["windows"] += len(wins)
        self.stats["scan_ms"] += (time.perf_counter() - t0) * 1000
        return unsent()

    def _scan_loop(self) -> None:
        if self.cfg.scan_nice > 0:
            _renice({threading.get_native_id()}, self.cfg.scan_nice)
        while True:
            with self._lock:
                while self._job is None and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
                rgb = self._job
            t0 = time.monotonic()
            try:
                found = self._scan(rgb, publish=self._hand_over)
            except Exception:  # a frame the detector refuses: the next scan tries again
                found = []
            took = time.monotonic() - t0
            with self._lock:
                self._job = None
                self._found += found
                # a scan slowed down by a busy CPU pushes the next one back
                self._scan_ready_at = time.monotonic() + took * (1 / self.cfg.max_scan_share - 1)

    def _hand_over(self, faces: list[tuple[np.ndarray, float]]) -> None:
        """An asynchronous scan's faces so far, for the next detect() call."""
        with self._lock:
            self._found += faces

    def _detections(self, rgb: np.ndarray, timestamp_ms: float | None) -> list[tuple[np.ndarray, float]]:
        """Faces from a scan that finished since the last call (starting one when due)."""
        due = (timestamp_ms is None or self._last_scan_ms is None or self._lost
               or timestamp_ms - self._last_scan_ms >= self.cfg.detect_period_s * 1000
               or timestamp_ms < self._last_scan_ms)
        if self._thread is None:
            if not due:
                return []
            self._last_scan_ms, self._lost = timestamp_ms, False
            return self._scan(rgb)
        with self._lock:
            found, self._found = self._found, []
            if due and self._job is None and time.monotonic() >= self._scan_ready_at:
                self._job = rgb
                self._last_scan_ms, self._lost = timestamp_ms, False
                self._wake.notify()
        return found

    def detect(self, rgb: np.ndarray, timestamp_ms: float | None = None) -> list[FaceMesh]:
        """Faces in an (H, W, 3) uint8 RGB frame. timestamp_ms (stream time) paces the scans;
        without it every call scans (still images)."""
        cfg = self.cfg
        candidates = list(self.regions)  # tracked faces first
        tracked = len(candidates)
        for b, _ in self._detections(rgb, timestamp_ms):
            if not any(box_iou(b, r) > 0.2 or _inside(b, r) or part_of(b, r) for r in candidates):
                candidates.append(b)
        meshes: list[FaceMesh] = []
        view = self._views[self._frame % len(self._views)]
        self._frame += 1
        k = 0
        while k < len(candidates) and len(meshes) < cfg.max_faces:
            # as many candidates as there are free places, landmarked side by side, then taken in order
            batch = candidates[k:k + cfg.max_faces - len(meshes)]
            for i, mesh in enumerate(self._landmark_all(rgb, batch, view), start=k):
                if mesh is None:
                    continue
                if min(mesh.bbox[2], mesh.bbox[3]) < cfg.min_face_px * 0.5:
                    continue
                if any(box_iou(mesh.bbox, m.bbox) > cfg.duplicate_iou or _inside(mesh.bbox, m.bbox) for m in meshes):
                    continue  # two crops landed on the same face
                if i >= tracked and not self.confirmed(rgb, mesh):
                    self.stats["unconfirmed"] += 1
                    continue
                meshes.append(mesh)
            k += len(batch)
        meshes = [m for m in meshes if not any(part_of(m.bbox, o.bbox) for o in meshes if o is not m)]
        # a face lost since the last frame may have moved faster than its crop, or left as
        # another came in: look again at once instead of at the next period
        self._lost = self._lost or len(meshes) < len(self.regions)
        self.regions = [m.bbox.copy() for m in meshes]
        return meshes

    def confirmed(self, rgb: np.ndarray, mesh: FaceMesh) -> bool:
        """A second look at a new face before it is tracked: the detector, run on a crop centred on
        the landmarks' box (crop_scale, then retry_scale if that fails; crop_px), must find a face
        there with confirm_confidence.

        The tiled detector sees most windows at a scale where the odd background pattern scores
        0.6-0.75, and the landmarker, given such a crop, sometimes meshes it. Framed like a face
        the landmarker found, the same pattern scored at most 0.59 in either framing (five such
        candidates in the empty room of no_face.mp4 at 640x480, 960x540 and 1280x720), real faces
        0.65 or more in 99.2% of 631 cases (98.7% in the first framing alone; FER2013 training
        faces and the photos, 24-120 px, composed scenes); a real face that misses it once is
        looked at again by the next scan."""
        if self._confirmer is None:
            return True
        c = self.cfg.crop_px / 2
        for scale in (self.cfg.crop_scale, self.cfg.retry_scale):  # a second framing only when the first fails
            cut = square_crop(rgb, mesh.bbox, scale, self.cfg.crop_px) if scale else None
            if cut is not None and any(b[0] <= c <= b[0] + b[2] and b[1] <= c <= b[1] + b[3]
                                       for b, _ in self._confirmer.run(cut[0], (0, 0, 0))):
                return True
        return False

    def _landmark_all(self, rgb: np.ndarray, boxes: list[np.ndarray],
                      view: CropView = CropView("plain")) -> list[FaceMesh | None]:
        """The face in each box's crop cut the view's way (None where there is none), on
        landmark_threads threads."""
        if self._pool is None or len(boxes) < 2:
            found = [self._face_in(rgb, b, view) for b in boxes]
        else:
            found = list(self._pool.map(lambda b: self._face_in(rgb, b, view), boxes))
        self.stats["crops"] += sum(n for _, n in found)
        return [m for m, _ in found]

    def _face_in(self, rgb: np.ndarray, box: np.ndarray, view: CropView = CropView("plain")) -> tuple[FaceMesh | None, int]:
        """The face in a box's crop, and how many crops that took. Thread-safe: it holds a
        landmarker of its own meanwhile. When the first crop shows no face, one wider crop
        (retry_scale) gives more context: a face that moved more than its crop allowed, or one
        the landmarker's own detector misses when it fills the crop (about half of the misses of
        48-64 px faces in 640x480 frames, measured on FER2013 training images). The view scales
        both crops and may mirror them; a mirrored crop's mesh is mirrored back."""
        lm = self._free.get()
        crops = 0
        try:
            for scale in (self.cfg.crop_scale, self.cfg.retry_scale):
                cut = self._cut(rgb, box, scale, view.zoom) if scale else None
                if cut is None:
                    continue
                crops += 1
                crop, x0, y0, side = cut
                found = lm.detect(flipped(crop) if view.flip else crop)
                if found:
                    mesh = unflip(found[0]) if view.flip else found[0]
                    return to_frame(mesh, x0, y0, side, rgb.shape[1], rgb.shape[0]), crops
            return None, crops
        finally:
            self._free.put(lm)

    def _cut(self, rgb: np.ndarray, box: np.ndarray, scale: float, zoom: float = 1.0) -> tuple | None:
        """(crop, x0, y0, side) around a box at this scale times zoom, or None when it misses the frame.
        A face cut as the training images are prepared (padded_crop_below_px, off by default) keeps
        that framing: a view's zoom does not apply to it, its mirroring does."""
        if scale == self.cfg.crop_scale and max(box[2], box[3]) < self.cfg.padded_crop_below_px:
            return padded_crop(rgb, box)
        return square_crop(rgb, box, scale * zoom, self.cfg.crop_px, self.cfg.upscale_sharpen)

    def close(self) -> None:
        if self._thread is not None:
            with self._lock:
                self._closing = True
                self._wake.notify()
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for lm in self._landmarkers:
            lm.close()
        self._landmarkers = []
        for det in (self._detector, self._confirmer):
            if det is not None:
                det.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
