"""Typestore with facephi_ros messages, bag opening with one-line errors, message iteration.

A bag recorded on a robot with real ROS 2 reads the same way: standard types come from the
Kilted typestore, our custom types and any other unknown type from the bag's own stored
message definitions.
"""
from __future__ import annotations

from pathlib import Path

from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from ..paths import shipped

OUR_TYPES = ("FaceLandmarks", "FaceLandmarksArray", "EmotionEstimate")
GT_TOPIC = "/ground_truth/emotion"  # EmotionEstimate with model "ground_truth", one per image


class BagError(RuntimeError):
    """A bag that cannot be used as asked; str() is one line."""


def typestore():
    ts = get_typestore(Stores.ROS2_KILTED)
    types = {}
    msg_dir = shipped("msg")
    for name in OUR_TYPES:
        types.update(get_types_from_msg((msg_dir / f"{name}.msg").read_text(), f"facephi_ros/msg/{name}"))
    ts.register(types)
    return ts


def open_writer(path: str | Path, storage: str = "mcap") -> Writer:
    path = Path(path)
    if path.exists():
        raise BagError(f"bag {path} already exists: choose another output path")
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
    if plugin is None:
        raise BagError(f"unknown storage '{storage}' (mcap or sqlite3)")
    w = Writer(path, version=9, storage_plugin=plugin)
    w.open()
    return w


class BagReader:
    """Opens a bag (MCAP or sqlite3), registers unknown types from the bag's own definitions, and
    checks topics; every failure is a BagError with one line."""

    def __init__(self, path: str | Path, ts=None):
        self.path = Path(path)
        self.ts = ts or typestore()
        if not self.path.exists():
            raise BagError(f"bag {self.path} not found")
        try:
            self.reader = Reader(self.path)
            self.reader.open()
        except Exception as e:  # rosbags raises several types for damaged files
            raise BagError(f"bag {self.path} cannot be opened: it is truncated or corrupt ({_first(e)})") from None
        self.connections = list(self.reader.connections)
        self.unknown: dict[str, str] = {}
        for c in self.connections:
            if c.msgtype in self.ts.types:
                continue
            text = getattr(c, "msgdef", None)
            data = getattr(text, "data", "") if text is not None else ""
            if data:
                try:
                    self.ts.register(get_types_from_msg(data, c.msgtype))
                    continue
                except Exception as e:
                    self.unknown[c.topic] = f"{c.msgtype} (its stored definition does not parse: {_first(e)})"
                    continue
            self.unknown[c.topic] = f"{c.msgtype} (no definition in the bag and not a known ROS 2 type)"

    @property
    def topics(self) -> dict[str, str]:
        return {c.topic: c.msgtype for c in self.connections}

    def require(self, topics) -> None:
        missing = [t for t in topics if t not in self.topics]
        if missing:
            have = ", ".join(f"{t} ({m})" for t, m in sorted(self.topics.items())) or "nothing"
            raise BagError(f"bag {self.path} has no topic {', '.join(missing)} (it has: {have})")
        bad = [t for t in topics if t in self.unknown]
        if bad:
            raise BagError(f"bag {self.path}: topic {bad[0]} has unknown message type {self.unknown[bad[0]]}")

    def messages(self, topics=None, deserialize: bool = True):
        """Yield (topic, msgtype, bag_timestamp_ns, raw_bytes, message or None)."""
        conns = [c for c in self.connections if topics is None or c.topic in topics]
        try:
            for c, t, raw in self.reader.messages(connections=conns):
                msg = None
                if deserialize:
                    if c.topic in self.unknown:
                        raise BagError(f"bag {self.path}: topic {c.topic} has unknown message type {self.unknown[c.topic]}")
                    msg = self.ts.deserialize_cdr(raw, c.msgtype)
                yield c.topic, c.msgtype, t, raw, msg
        except BagError:
            raise
        except Exception as e:
            raise BagError(f"bag {self.path} is truncated or corrupt: reading stopped ({_first(e)})") from None

    def close(self) -> None:
        try:
            self.reader.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _first(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return f"{type(e).__name__}: {s[0][:120]}" if s else type(e).__name__


def stamp_ns(header) -> int:
    return int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec)
