"""A separate-process subscriber that measures image transport: stamp -> arrival, per image.
Prints one JSON line with the latencies (ms) when it receives SIGINT/SIGTERM."""
import json
import sys

import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image

from facephi_ros.nodes.common import IMAGE_TOPIC, SENSOR_QOS


def main():
    rclpy.init()
    node = Node("image_probe")
    lat = []

    def cb(m):
        now = node.get_clock().now().nanoseconds
        lat.append((now - (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)) / 1e6)

    node.create_subscription(Image, IMAGE_TOPIC, cb, SENSOR_QOS)
    print("probe ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    print(json.dumps({"latency_ms": lat}), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
