"""A separate-process rclpy node that republishes every message of one type: /echo/in -> /echo/out.
Usage: python echo_node.py FaceLandmarksArray|EmotionEstimate"""
import sys

import facephi_ros.msg as msgs
import rclpy
from rclpy.node import Node

from facephi_ros.nodes.common import reliable_qos


def main():
    kind = getattr(msgs, sys.argv[1])
    rclpy.init()
    node = Node("echo")
    pub = node.create_publisher(kind, "/echo/out", reliable_qos())
    node.create_subscription(kind, "/echo/in", pub.publish, reliable_qos())
    print("echo ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass


if __name__ == "__main__":
    main()
