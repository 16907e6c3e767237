"""Test helpers: start facephi_ros node executables as processes; a probe node that publishes
and records in the test process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from facephi_ros.launcher import package_paths


def stamp_ns(x) -> int:
    """Nanoseconds of a message's header stamp (or of a Header, or of a Time)."""
    stamp = getattr(getattr(x, "header", x), "stamp", x)
    return stamp.sec * 10**9 + stamp.nanosec


class NodeProcess:
    """A node executable from the install prefix, with parameters, logging to a file."""

    def __init__(self, executable: str, name: str, params: dict | None = None, extra_args: list[str] | None = None):
        lib_dir, params_file = package_paths()
        self.tmp = tempfile.TemporaryDirectory(prefix=f"facephi-{name}-")
        cmd = [str(lib_dir / executable), "--ros-args", "-r", f"__node:={name}", "--params-file", str(params_file)]
        params = {"autostart": True} | (params or {})  # as the launchers start them (plain nodes ignore it)
        if params:
            f = Path(self.tmp.name) / "params.yaml"
            f.write_text(yaml.safe_dump({name: {"ros__parameters": params}}))
            cmd += ["--params-file", str(f)]
        cmd += extra_args or []
        self.log_path = Path(self.tmp.name) / "log.txt"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_log(self, text: str, timeout: float = 20.0) -> bool:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if text in self.log:
                return True
            if not self.alive():
                return text in self.log
            time.sleep(0.1)
        return False

    def stop(self, sig=signal.SIGINT, timeout: float = 10.0) -> int:
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        self.tmp.cleanup()


class LineReader:
    """Collects a process's stdout lines in a thread, so that no read blocks a test."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines = proc, []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line)

    @property
    def text(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def wait(self, text: str, timeout: float = 60.0) -> bool:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if text in self.text:
                return True
            if self.proc.poll() is not None:
                self._thread.join(5)
                return text in self.text
            time.sleep(0.1)
        return False

    def finish(self, timeout: float = 30.0) -> str:
        """Wait for the process to exit and its output to end; all output."""
        self.proc.wait(timeout)
        self._thread.join(10)
        return self.text


def children(pid: int, exe: str | None = None) -> list:
    """psutil processes below `pid` (those running `exe` when given)."""
    import psutil

    out = []
    for c in psutil.Process(pid).children(recursive=True):
        try:
            if exe is None or any(exe in part for part in c.cmdline()):
                out.append(c)
        except psutil.Error:
            pass
    return out


class Probe:
    """An rclpy node in the test process, spun in a background thread."""

    def __init__(self, name: str = "probe"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.node = Node(f"{name}_{os.getpid()}_{int(time.monotonic() * 1000) % 100000}")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {}
        self.lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self._rclpy = rclpy

    def _spin(self):
        while not self._stop:
            self.executor.spin_once(timeout_sec=0.05)

    def subscribe(self, msg_type, topic: str, qos=None, raw: bool = False):
        from facephi_ros.nodes.common import reliable_qos

        self.received.setdefault(topic, [])

        def cb(m):
            with self.lock:
                self.received[topic].append((time.time_ns(), m))  # arrival, system clock (= ROS time)

        return self.node.create_subscription(msg_type, topic, cb, qos or reliable_qos(50), raw=raw)

    def wait_for_late(self, sub, msg_type, n: int = 1, timeout: float = 30.0) -> bool:
        """wait_for on a topic whose publisher appeared while the test ran (a per-face topic).

        Once in a full CI run, such a subscription never received anything in 20 s while its
        sibling topic, created by the same node in the same callback, did: the reader had not
        been matched with the writer (a lost DDS endpoint announcement; never reproduced in 12
        runs alone under load). If nothing has arrived after half the timeout, this re-creates
        the subscription once, saying so on stderr with the match counts, and waits the rest."""
        topic = sub.topic_name
        if self.wait_for(topic, n, timeout / 2):
            return True
        print(f"[probe] nothing on {topic} after {timeout / 2:.0f} s (matched publishers {sub.get_publisher_count()}, "
              f"graph publishers {self.node.count_publishers(topic)}): subscribing again", file=sys.stderr, flush=True)
        self.node.destroy_subscription(sub)
        self.subscribe(msg_type, topic)
        return self.wait_for(topic, n, timeout / 2)

    def messages(self, topic: str) -> list:
        with self.lock:
            return [m for _, m in self.received.get(topic, [])]

    def publisher(self, msg_type, topic: str, qos=None):
        from facephi_ros.nodes.common import reliable_qos

        return self.node.create_publisher(msg_type, topic, qos or reliable_qos(50))

    def wait_for(self, topic: str, n: int = 1, timeout: float = 20.0) -> bool:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if len(self.messages(topic)) >= n:
                return True
            time.sleep(0.05)
        return False

    def wait_until(self, topic: str, pred, timeout: float = 20.0) -> bool:
        """Wait until pred(messages received on topic so far) is true."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if pred(self.messages(topic)):
                return True
            time.sleep(0.05)
        return False

    def wait_quiet(self, topic: str, quiet_s: float, timeout: float = 20.0) -> bool:
        """Wait until nothing has arrived on `topic` for `quiet_s` seconds (what was pending came)."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            with self.lock:
                last = self.received[topic][-1][0] if self.received.get(topic) else 0
            if time.time_ns() - last > quiet_s * 1e9:
                return True
            time.sleep(0.05)
        return False

    def wait_subscribers(self, pub, n: int = 1, timeout: float = 20.0) -> bool:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if pub.get_subscription_count() >= n:
                return True
            time.sleep(0.05)
        return False

    def wait_publishers(self, topic: str, n: int = 1, timeout: float = 20.0) -> bool:
        """Discovery from this side: `n` publishers matched on `topic` (needs a subscription)."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            subs = [s for s in self.node.subscriptions if s.topic_name == topic]
            if subs and all(s.get_publisher_count() >= n for s in subs):
                return True
            time.sleep(0.05)
        return False

    def diagnostics(self, node_name: str) -> list[dict]:
        """The /diagnostics values published so far by the node `node_name` (needs subscribe)."""
        out = []
        for d in self.messages("/diagnostics"):
            for st in d.status:
                if st.name.rsplit("/", 1)[-1] == node_name:
                    out.append({kv.key: kv.value for kv in st.values} | {"_message": st.message})
        return out

    def wait_diagnostic(self, node_name: str, pred, timeout: float = 20.0) -> bool:
        """Wait for a /diagnostics status of `node_name` whose values satisfy pred(dict)."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if any(pred(v) for v in self.diagnostics(node_name)):
                return True
            time.sleep(0.05)
        return False

    def _call(self, srv_type, name: str, request, timeout: float):
        """Call a service with a client of its own. A client kept across tests could still be
        matched with the server of a node process that has just ended (the graph forgets it
        late on a busy machine) and send its request there: once, under load, a configure
        request went unanswered for 60 s that way. If no answer comes within half the timeout,
        the call is made once more with a new client (the request never reached a live server)."""
        t_end = time.monotonic() + timeout
        for attempt in range(2):
            client = self.node.create_client(srv_type, name)
            try:
                left = t_end - time.monotonic()
                if not client.wait_for_service(timeout_sec=max(0.1, left)):
                    raise TimeoutError(f"service {name} not available after {timeout} s")
                done = threading.Event()
                future = client.call_async(request)
                future.add_done_callback(lambda f: done.set())
                if done.wait(max(0.1, (t_end - time.monotonic()) / (2 - attempt))):
                    return future.result()
            finally:
                self.node.destroy_client(client)
            print(f"[probe] no answer from {name}: calling again with a new client", file=sys.stderr, flush=True)
        raise TimeoutError(f"no answer from {name} within {timeout} s")

    def change_state(self, node_name: str, transition: str, timeout: float = 60.0) -> bool:
        """Drive a lifecycle transition through the standard service /<node>/change_state.
        transition: configure, activate, deactivate, cleanup or shutdown (from the current state)."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        if transition == "shutdown":
            transition = {"unconfigured": "unconfigured_shutdown", "inactive": "inactive_shutdown",
                          "active": "active_shutdown"}[self.get_state(node_name)]
        req = ChangeState.Request()
        req.transition = Transition(id=getattr(Transition, f"TRANSITION_{transition.upper()}"))
        return self._call(ChangeState, f"/{node_name}/change_state", req, timeout).success

    def get_state(self, node_name: str, timeout: float = 20.0) -> str:
        """The lifecycle state's label (unconfigured, inactive, active, finalized), via /<node>/get_state."""
        from lifecycle_msgs.srv import GetState

        return self._call(GetState, f"/{node_name}/get_state", GetState.Request(), timeout).current_state.label

    def handshake(self, pub, make_msg, topic: str, match, timeout: float = 30.0, period: float = 0.2) -> bool:
        """Publish make_msg() every `period` s until a message on `topic` satisfies match(msg):
        proof that the node under test receives what this probe publishes (discovery done on
        both sides), instead of a guessed sleep after discovery."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            pub.publish(make_msg())
            t_next = time.monotonic() + period
            while time.monotonic() < t_next:
                if any(match(m) for m in self.messages(topic)):
                    return True
                time.sleep(0.02)
        return False

    def clear(self, topic: str) -> None:
        with self.lock:
            self.received[topic] = []

    def now(self):
        return self.node.get_clock().now().to_msg()

    def close(self):
        self._stop = True
        self._thread.join(timeout=2)
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def image_msg(rgb, stamp, encoding: str = "rgb8", frame_id: str = "camera"):
    import array

    import numpy as np
    from sensor_msgs.msg import Image

    img = rgb if encoding == "rgb8" else np.ascontiguousarray(rgb[:, :, ::-1])
    m = Image(height=img.shape[0], width=img.shape[1], encoding=encoding, is_bigendian=0, step=img.shape[1] * 3,
              data=array.array("B", img.tobytes()))
    m.header.stamp = stamp
    m.header.frame_id = frame_id
    return m


def read_video(path, max_frames: int = 0, size: tuple[int, int] | None = None):
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if size:
            f = cv2.resize(f, size, interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
        if max_frames and len(frames) >= max_frames:
            break
    cap.release()
    return frames
