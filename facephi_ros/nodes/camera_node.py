"""camera node: OpenCV capture of a device, stream or video file -> sensor_msgs/Image.

Parameters: source ('' = the bundled default video; '0' or '/dev/video0' = a device; a path =
a video file; a URL = a network stream), loop, width, height (0 = native), fps (0 = the
source's own rate), frame_id, reconnect_period (s), max_frames (0 = unlimited).
Publishes /camera/image_raw (bgr8, sensor-data QoS, stamped at capture) while active, and
/diagnostics (with the lifecycle state and the number of matched subscribers) in every state.
"""
from __future__ import annotations

import array
import threading

from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import Image

from ..assets import asset_path
from ..camera.source import FrameSource, Pacer, SourceError
from .common import (
    IMAGE_TOPIC,
    SENSOR_QOS,
    ManagedNode,
    StartupError,
    run_node,
)


class CameraNode(ManagedNode):
    """Managed node: configure checks the parameters and the source (a missing file fails the
    transition), activate opens the source and starts publishing, deactivate stops and releases
    the device (another program may use it), cleanup frees the publisher."""

    def __init__(self, **kwargs):
        super().__init__("camera", {"source": "", "loop": False, "width": 0, "height": 0, "fps": 0.0,
                                    "frame_id": "camera", "reconnect_period": 1.0, "max_frames": 0}, **kwargs)
        self.src: FrameSource | None = None
        self.pub = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.diag.watch("subscribers", lambda: self.pub.get_subscription_count() if self.pub is not None else 0)

    def configure(self) -> None:
        p = self.p
        if p["width"] < 0 or p["height"] < 0 or p["fps"] < 0 or not p["reconnect_period"] > 0 or p["max_frames"] < 0:
            raise StartupError(f"width, height, fps and max_frames must be >= 0 and reconnect_period > 0 (got "
                               f"{p['width']}, {p['height']}, {p['fps']}, {p['max_frames']}, {p['reconnect_period']})")
        self.source = p["source"] or str(asset_path("default_video"))
        try:
            self.src = FrameSource(self.source, p["width"], p["height"], p["fps"], p["loop"])
        except SourceError as e:
            raise StartupError(str(e)) from None
        self.src.release()  # the device is held only while active
        self.pub = self.create_lifecycle_publisher(Image, IMAGE_TOPIC, SENSOR_QOS)
        self.diag.set("source", self.source)

    def activate(self) -> None:
        self.src.frames_read = 0
        if self.src.open():
            self.get_logger().info(f"capturing {self.source} at {self.src.fps:.1f} Hz")
        else:
            self.get_logger().error(f"cannot open camera {self.source}; retrying every {self.p['reconnect_period']} s")
            self.diag.status(DiagnosticStatus.ERROR, "source not available")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def deactivate(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self.src is not None:
            self.src.release()
            self.get_logger().info(f"released {self.source}")

    def cleanup(self) -> None:
        if self.src is not None:
            self.src.release()
            self.src = None
        if self.pub is not None:
            self.destroy_lifecycle_publisher(self.pub)
            self.pub = None

    def _loop(self) -> None:
        pacer = Pacer(self.src.fps)
        disconnected = self.src.cap is None
        while not self._stop.is_set():
            if self.src.cap is None:  # live source gone: try again later
                if self._stop.wait(self.p["reconnect_period"]):
                    break
                if self.src.open():
                    self.get_logger().info(f"camera {self.src.source} reconnected")
                    self.diag.count("reconnects")
                    self.diag.status(DiagnosticStatus.OK, "ok")
                    disconnected = False
                    pacer = Pacer(self.src.fps)
                continue
            frame = self.src.read()
            stamp = self.get_clock().now().to_msg()
            if frame is None:
                if self.src.live:
                    if not disconnected:
                        self.get_logger().error(f"camera {self.src.source} stopped delivering frames; reconnecting")
                        self.diag.status(DiagnosticStatus.ERROR, "disconnected")
                        self.diag.count("disconnects")
                        disconnected = True
                    self.src.release()
                    continue
                self.get_logger().info(f"end of video {self.src.source} after {self.src.frames_read} frames")
                self.diag.status(DiagnosticStatus.OK, "end of video")
                break
            msg = Image(height=frame.shape[0], width=frame.shape[1], encoding="bgr8", is_bigendian=0,
                        step=frame.shape[1] * 3, data=array.array("B", frame.tobytes()))
            msg.header.stamp = stamp
            msg.header.frame_id = self.p["frame_id"]
            try:
                self.pub.publish(msg)
            except Exception:  # the context was shut down (Ctrl-C) while this frame was in flight
                if self._stop.is_set() or not self.context.ok():
                    break
                raise
            self.diag.count("frames")
            if self.p["max_frames"] and self.diag.counters["frames"] >= self.p["max_frames"]:
                self.get_logger().info(f"published max_frames={self.p['max_frames']}")
                break
            if not self.src.live:
                pacer.wait()


def main(args=None) -> int:
    return run_node(CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
