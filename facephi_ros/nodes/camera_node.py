"""camera node: OpenCV capture of a device, stream or video file -> sensor_msgs/Image.

Parameters: source ('' = the bundled default video; '0' or '/dev/video0' = a device; a path =
a video file; a URL = a network stream), loop, width, height (0 = native), fps (0 = the
source's own rate), frame_id, reconnect_period (s), max_frames (0 = unlimited).
Publishes /camera/image_raw (bgr8, sensor-data QoS, stamped at capture) and /diagnostics.
"""
from __future__ import annotations

import array
import threading

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import Image

from ..assets import asset_path
from ..camera.source import FrameSource, Pacer, SourceError
from .common import (
    IMAGE_TOPIC,
    SENSOR_QOS,
    Diagnostics,
    StartupError,
    declare,
    run_node,
)


class CameraNode(Node):
    def __init__(self):
        super().__init__("camera")
        p = declare(self, {"source": "", "loop": False, "width": 0, "height": 0, "fps": 0.0,
                           "frame_id": "camera", "reconnect_period": 1.0, "max_frames": 0})
        self.p = p
        source = p["source"] or str(asset_path("default_video"))
        try:
            self.src = FrameSource(source, p["width"], p["height"], p["fps"], p["loop"])
        except SourceError as e:
            raise StartupError(str(e)) from None
        self.pub = self.create_publisher(Image, IMAGE_TOPIC, SENSOR_QOS)
        self.diag = Diagnostics(self)
        self.diag.set("source", source)
        self._stop = threading.Event()
        if self.src.cap is None:
            self.get_logger().error(f"cannot open camera {source}; retrying every {p['reconnect_period']} s")
            self.diag.status(DiagnosticStatus.ERROR, "source not available")
        else:
            self.get_logger().info(f"capturing {source} at {self.src.fps:.1f} Hz")
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

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

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.src.release()


def main(args=None) -> int:
    return run_node(CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
