"""What every facephi_ros node shares: QoS profiles, topic names, /diagnostics, the managed
(lifecycle) node base and start-up."""
from __future__ import annotations

import _thread
import sys
import threading
import time
from collections import OrderedDict, deque

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
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
        self._watched: dict[str, object] = {}
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

    def watch(self, key: str, fn) -> None:
        """A gauge read at each publication: fn() -> value (e.g. matched subscribers)."""
        self._watched[key] = fn

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
        for key, fn in list(self._watched.items()):
            try:
                values[key] = fn()
            except Exception:  # a watched entity torn down by a transition
                values[key] = None
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


class ManagedNode(LifecycleNode):
    """Base of the facephi_ros managed (lifecycle, REP-2002) nodes.

    Subclasses declare their parameters through `params` and override:
      configure()  validate parameters, load models, create publishers (raise StartupError: one line);
      activate()   start work: subscriptions, worker threads, devices;
      deactivate() stop work and release devices (must tolerate a partial activate);
      cleanup()    free what configure() took (must tolerate a partial configure).
    Parameters are read again at each configure. /diagnostics is published in every state,
    with the lifecycle state as a value. With the parameter `autostart` (true in the launch
    file and the launcher) run_node takes the node to active itself; without it a lifecycle
    manager drives the standard services (/<node>/change_state, /<node>/get_state).
    """

    def __init__(self, name: str, params: dict, **kwargs):
        super().__init__(name, **kwargs)
        self.p = declare(self, {"autostart": False} | params)
        self.configured = False
        self.active = False
        self.startup_error: str | None = None
        self.throttle = LogThrottle()
        self.diag = Diagnostics(self)
        self._set_state("unconfigured")

    # -- overridden by the nodes --------------------------------------------------------------
    def configure(self) -> None:
        pass

    def activate(self) -> None:
        pass

    def deactivate(self) -> None:
        pass

    def cleanup(self) -> None:
        pass

    # -- lifecycle callbacks -------------------------------------------------------------------
    def _set_state(self, label: str) -> None:
        self.diag.set("lifecycle_state", label)
        if label == "unconfigured" and self.startup_error:
            self.diag.status(DiagnosticStatus.ERROR, self.startup_error)
        else:
            self.diag.status(DiagnosticStatus.OK, "ok" if label == "active" else label)

    def _fail(self, step: str, e: BaseException) -> TransitionCallbackReturn:
        """One clear line for a failed transition (none when the context is going away: Ctrl-C)."""
        if isinstance(e, (StartupError, _asset_error())):
            text = str(e)
        else:
            text = f"{step} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if self.context.ok():
            self.startup_error = text if step == "configure" else self.startup_error
            self.get_logger().error(text)
        return TransitionCallbackReturn.FAILURE

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.p = {k: self.get_parameter(k).value for k in self.p}
        self.startup_error = None
        try:
            self.configure()
        except Exception as e:
            self._safe(self.cleanup)
            ret = self._fail("configure", e)
            self._set_state("unconfigured")
            return ret
        self.configured = True
        self._set_state("inactive")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)  # enables the lifecycle publishers
        try:
            self.activate()
        except Exception as e:
            self._safe(self.deactivate)
            super().on_deactivate(state)
            return self._fail("activate", e)
        self.active = True
        self._set_state("active")
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.active = False
        self._safe(self.deactivate)
        self._set_state("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._safe(self.cleanup)
        self.configured = False
        self._set_state("unconfigured")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        self._set_state("finalized")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        self._set_state("unconfigured")
        return TransitionCallbackReturn.SUCCESS

    def _safe(self, fn) -> None:
        try:
            fn()
        except Exception as e:  # tearing down must not fail a transition
            if self.context.ok():
                self.get_logger().warning(f"{fn.__name__}: {type(e).__name__}: {e}")

    def close(self) -> None:
        """Leave whatever state the node is in: deactivate, then clean up (idempotent)."""
        if self.active:
            self.active = False
            self._safe(self.deactivate)
        if self.configured:
            self.configured = False
            self._safe(self.cleanup)

    def bring_up(self) -> bool:
        """configure + activate (autostart); False when a transition failed (already logged)."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def bad_input(self, kind: str, text: str) -> None:
        report_bad_input(self, self.diag, self.throttle, kind, text)


def _asset_error():
    from ..assets import AssetError

    return AssetError


def redeliver_interrupts_from_finalizers() -> None:
    """A Ctrl-C that lands inside an object's __del__ (a library's finalizer that runs while a
    model loads: `regex`'s, under transformers) cannot propagate from there: Python prints
    "Exception ignored ... KeyboardInterrupt" with a traceback, drops the interrupt and carries
    on, so the node would not stop. From then on such an interrupt is delivered again to the main
    thread by a helper thread once the finalizer has returned (were it to land in another one,
    this repeats), and run_node ends the node quietly; every other unraisable exception goes to
    the hook that was there before."""
    previous = sys.unraisablehook
    if getattr(previous, "redelivers_interrupts", False):
        return

    def hook(unraisable):
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            # not from here: in the main thread the interrupt would be raised inside this hook
            later = threading.Timer(0.01, _thread.interrupt_main)
            later.daemon = True
            later.start()
        else:
            previous(unraisable)

    hook.redelivers_interrupts = True
    sys.unraisablehook = hook


def run_node(factory, args=None) -> int:
    """Start a node made by `factory()`, spin it until Ctrl-C / SIGTERM / shutdown.

    A managed node with `autostart` is taken to active first; a failed configure (a bad
    parameter, a missing model) was logged as one line and exits with status 2, nothing left
    running. A plain node's StartupError is printed as one line, also status 2. Ctrl-C and
    SIGTERM exit 0 after the node's own clean-up, also when they arrive while the node is still
    starting (no traceback from a context that went away, nor from a finalizer the Ctrl-C
    happened to land in).
    """
    redeliver_interrupts_from_finalizers()
    try:
        return _run_node(factory, args)
    except KeyboardInterrupt:
        # a Ctrl-C that landed outside the spin: while an exception was being handled, or in
        # the clean-up itself. The node is going away on request; that is not an error.
        return 0


def _run_node(factory, args) -> int:
    from rclpy.exceptions import ParameterException

    startup_errors = (StartupError, _asset_error(), ParameterException)
    node = None
    code = 0
    try:
        rclpy.init(args=args if args is not None else sys.argv)
        node = factory()
        if isinstance(node, ManagedNode) and node.p.get("autostart") and not node.bring_up():
            code = 2 if rclpy.ok() else 0
        else:
            rclpy.spin(node)
    except startup_errors as e:
        name = node.get_name() if node else getattr(factory, "__name__", "node")
        print(f"[facephi_ros] {name}: error: {str(e).splitlines()[0]}", file=sys.stderr, flush=True)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # stopped while starting: the context went away under the node being built
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close:
                close()
            try:
                node.destroy_node()
            except Exception:
                pass
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
