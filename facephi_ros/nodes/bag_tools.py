"""Bag recorder and player as rclpy nodes (raw CDR in and out: no conversion, no loss).

Recorder: subscribes to topics as they appear in the graph (type looked up there), best effort
for images, reliable otherwise; writes every message with its arrival time; on SIGINT/SIGTERM
or close() it finishes the bag properly, so that what was received is readable.
Player: publishes a bag's messages with their original timing (rate factor, loop, start
offset, topic selection, remapping), images with sensor-data QoS, the rest reliable.
"""
from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile

from ..bags.io import BagError, BagReader, open_writer, typestore
from .common import SENSOR_QOS, reliable_qos

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def qos_for(msgtype: str) -> QoSProfile:
    return SENSOR_QOS if msgtype in IMAGE_TYPES else reliable_qos(100)


def message_class(msgtype: str):
    pkg, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError):
        raise BagError(f"message type {msgtype} is not installed here, so it cannot be published") from None


class Recorder:
    def __init__(self, node: Node, out: str | Path, topics: list[str], storage: str = "mcap", keep: bool = False):
        self.node, self.topics = node, list(topics)
        self.ts = typestore()
        self.writer = open_writer(out, storage)
        self.path = Path(out)
        self.conns: dict[str, object] = {}
        self.counts: dict[str, int] = {t: 0 for t in self.topics}
        self.kept: dict[str, list] = {t: [] for t in self.topics} if keep else {}
        self.lock = threading.Lock()
        self.closed = False
        self._timer = node.create_timer(0.2, self._discover)
        self._discover()

    def _discover(self) -> None:
        types = dict(self.node.get_topic_names_and_types())
        for t in self.topics:
            if t in self.conns or t not in types:
                continue
            msgtype = types[t][0]
            with self.lock:
                self.conns[t] = self.writer.add_connection(t, msgtype, typestore=self.ts)
            cls = message_class(msgtype)
            self.node.create_subscription(cls, t, lambda raw, t=t: self._on(t, raw), qos_for(msgtype), raw=True)
        if len(self.conns) == len(self.topics):
            self._timer.cancel()

    def _on(self, topic: str, raw: bytes) -> None:
        now = time.time_ns()
        with self.lock:
            if self.closed:
                return
            self.writer.write(self.conns[topic], now, raw)
            self.counts[topic] += 1
            if topic in self.kept:
                self.kept[topic].append((now, raw))

    def close(self) -> dict:
        with self.lock:
            if not self.closed:
                self.closed = True
                self.writer.close()
        return dict(self.counts)


class Player:
    def __init__(self, node: Node, bag: str | Path, topics: list[str] | None = None, remap: dict | None = None,
                 rate: float = 1.0, loop: bool = False, start_offset: float = 0.0):
        if rate <= 0:
            raise BagError(f"rate must be > 0, got {rate}")
        self.node, self.rate, self.loop, self.start_offset = node, rate, loop, start_offset
        self.reader = BagReader(bag)
        self.selected = list(topics) if topics else list(self.reader.topics)
        self.reader.require(self.selected)
        self.remap = remap or {}
        self.pubs = {}
        for t in self.selected:
            msgtype = self.reader.topics[t]
            self.pubs[t] = node.create_publisher(message_class(msgtype), self.remap.get(t, t), qos_for(msgtype))
        self.published: dict[str, int] = {t: 0 for t in self.selected}
        self.publish_times: list[tuple[str, int, bytes]] = []  # (topic, wall ns, raw) when record_times
        self.record_times = False
        self._stop = threading.Event()

    def wait_for_subscribers(self, topics: list[str], timeout: float = 30.0) -> bool:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if all(self.pubs[t].get_subscription_count() > 0 for t in topics if t in self.pubs):
                return True
            time.sleep(0.1)
        return False

    def play(self) -> dict:
        """Publish the bag (blocking); returns messages published per topic."""
        t0_bag = self.reader.reader.start_time + int(self.start_offset * 1e9)
        while True:
            t0_wall = time.monotonic()
            for topic, _, t, raw, _ in self.reader.messages(self.selected, deserialize=False):
                if self._stop.is_set():
                    return dict(self.published)
                if t < t0_bag:
                    continue
                delay = t0_wall + (t - t0_bag) / 1e9 / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.pubs[topic].publish(raw)
                self.published[topic] += 1
                if self.record_times:
                    self.publish_times.append((topic, time.time_ns(), raw))
            if not self.loop or self._stop.is_set():
                return dict(self.published)

    def stop(self) -> None:
        self._stop.set()
