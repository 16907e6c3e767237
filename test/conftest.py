"""Shared test fixtures: real rclpy nodes in separate processes, on localhost, in a domain of
their own; the real face data in ../shared/data (override with FACEPHI_DATA)."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FACEPHI_DATA", REPO.parent / "shared" / "data"))
FACES = DATA / "faces"

# DDS domains of their own: each test module gets a fresh domain id (the `ros` fixture), so that
# neither parallel sessions, robots on the network nor a previous module's processes mix in.
_DOMAINS = iter(range(random.Random(os.getpid()).randint(1, 100), 233))
os.environ["ROS_DOMAIN_ID"] = str(next(_DOMAINS))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("GLOG_minloglevel", "2")


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data {path} not found (set FACEPHI_DATA)")
    return path


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return need(FACES)


@pytest.fixture(scope="module")
def ros():
    """rclpy for the test process (the side that feeds and listens), in a DDS domain of the
    module's own; node processes started in the module inherit it through ROS_DOMAIN_ID."""
    import rclpy

    domain = next(_DOMAINS)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    rclpy.init(domain_id=domain)
    yield rclpy
    rclpy.try_shutdown()


@pytest.fixture()
def probe(ros):
    from rosnodes import Probe

    p = Probe()
    yield p
    p.close()


@pytest.fixture(scope="session")
def posed(faces_dir):
    """MediaPipe faces of two posed photos: {'happy' | 'surprise': (FaceMesh, width, height)}."""
    import cv2

    from facephi_ros.landmarks.landmarker import Landmarker
    out = {}
    with Landmarker(video=False, num_faces=1) as lm:
        for label, name in (("happy", "0-f15-hao-ph.jpg"), ("surprise", "0-f1-su-ph.jpg")):
            rgb = cv2.cvtColor(cv2.imread(str(faces_dir / name)), cv2.COLOR_BGR2RGB)
            out[label] = (lm.detect(rgb)[0], rgb.shape[1], rgb.shape[0])
    return out
