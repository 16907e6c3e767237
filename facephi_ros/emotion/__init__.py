"""Emotion estimation from landmark streams (ROS-free)."""
