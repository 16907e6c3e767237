"""Thin rclpy nodes: each wires topics, parameters and QoS around the ROS-free core."""
