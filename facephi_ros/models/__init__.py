"""PyTorch models (ROS-free)."""
