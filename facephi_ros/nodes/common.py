"""What every facephi_ros node shares: QoS profiles, topic names, /diagnostics, start-up."""
from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict, deque

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Default topic names (remap with --ros-args -r old:=new, or in the launch file).
IMAGE_TOPIC = "/camera/image_raw"
FACES_TOPIC = "/facephi/faces"
DEBUG_IMAGE_TOPIC = "/facephi/debug_image"
EMOTION_TOPIC = "/emotion"
DESCRIPTION_TOPIC = "/emotion/description"

SENSOR_QOS = qos_profile_sensor_data  # best effort, keep last 5: images


def reliable_qos(depth: int = 20) -> QoSProfile:
    """Landmarks and estimates: small messages that recorders must not lose."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)


class StartupError(RuntimeError):
    """A node cannot start (bad parameter, missing model...); str() is one line."""


class Diagnostics:
    """Counters and timings of one node, published on /diagnostics once per `period` seconds.

    count(key): monotonically increasing counters (frames, drops, each kind of bad input);
    time(seconds): a processing time sample (mean and p95 over the last period are published);
    set(key, value): the last value of a gauge (faces in view...).
    """

    def __init__(self, node: Node, period: float = 1.0):
        self.node = node
        self.name = node.get_fully_qualified_name()
        self.counters: dict[str, int] = {}
        self.gauges: dict[str, object] = {}
        self._times: deque = deque(maxlen=1000)
        self._lock = threading.Lock()
        self._last_frames = 0
        self._last_t = time.monotonic()
        self.level = DiagnosticStatus.OK
        self.message = "ok"
        self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.timer = node.create_timer(period, self.publish)

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def time(self, seconds: float) -> None:
        with self._lock:
            self._times.append(seconds)

    def set(self, key: str, value) -> None:
        with self._lock:
            self.gauges[key] = value

    def status(self, level: int, message: str) -> None:
        self.level, self.message = level, message

    def snapshot(self) -> dict:
        with self._lock:
            now = time.monotonic()
            frames = self.counters.get("frames", 0)
            rate = (frames - self._last_frames) / max(now - self._last_t, 1e-6)
            self._last_frames, self._last_t = frames, now
            times = np.array(self._times) * 1000 if self._times else np.zeros(1)
            self._times.clear()
            values = {"rate_hz": round(rate, 2), "processing_ms_mean": round(float(times.mean()), 3),
                      "processing_ms_p95": round(float(np.percentile(times, 95)), 3)}
            values.update(self.counters)
            values.update(self.gauges)
            return values

    def publish(self) -> None:
        values = self.snapshot()
        msg = DiagnosticArray()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        st = DiagnosticStatus(level=self.level, name=self.name, message=self.message, hardware_id="facephi_ros")
        st.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg.status = [st]
        self.pub.publish(msg)


class LogThrottle:
    """Log each distinct message at most once per `period` seconds (bounded memory), so that a
    stream of bad input gives one clear line per kind of problem, not a flood."""

    def __init__(self, period: float = 5.0, max_keys: int = 256):
        self.period, self.max_keys = period, max_keys
        self._last: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, text: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(text)
            if last is not None and now - last < self.period:
                return False
            self._last[text] = now
            self._last.move_to_end(text)
            while len(self._last) > self.max_keys:
                self._last.popitem(last=False)
            return True


def report_bad_input(node: Node, diag: "Diagnostics", throttle: LogThrottle, kind: str, text: str) -> None:
    """Count a bad input on /diagnostics and log it as one line (throttled per message).
    Once the node's context has shut down (Ctrl-C) a failure is no bad input: work in flight
    merely has nowhere to publish, so nothing is counted or logged."""
    if not node.context.ok():
        return
    diag.count(kind)
    if throttle(text):
        node.get_logger().error(text)


def run_node(factory, args=None) -> int:
    """Start a node made by `factory()`, spin it until Ctrl-C / SIGTERM / shutdown.

    A StartupError (or a model-file error) becomes one line on stderr and exit status 2, with
    nothing left running; Ctrl-C and SIGTERM exit 0 after the node's own clean-up.
    """
    from ..assets import AssetError

    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    code = 0
    try:
        node = factory()
        rclpy.spin(node)
    except (StartupError, AssetError) as e:
        name = node.get_name() if node else getattr(factory, "__name__", "node")
        print(f"[facephi_ros] {name}: error: {e}", file=sys.stderr, flush=True)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return code


def declare(node: Node, params: dict) -> dict:
    """Declare parameters with defaults; return their current values by name."""
    out = {}
    for name, default in params.items():
        node.declare_parameter(name, default)
        out[name] = node.get_parameter(name).value
    return out
