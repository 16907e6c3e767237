"""Metrics, plots and evaluation helpers (ROS-free)."""
