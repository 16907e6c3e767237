"""pip install of the ROS-free facephi_ros library (landmarks, features, models, training,
evaluation). The ROS 2 package itself (messages, node executables, launch) is built with
CMake/colcon; see README.md."""
from setuptools import setup

setup()
