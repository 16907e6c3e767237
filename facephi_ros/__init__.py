"""facephi_ros: emotion estimation from facial landmarks for ROS 2 robots.

The hand-written modules (landmarks, features, models, training, evaluation) import without
rclpy; only facephi_ros.nodes needs ROS. The generated message classes (facephi_ros.msg) live
in the CMake/colcon install prefix, which may be a different directory from this source tree:
extend_path lets one package span both.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)  # noqa: F821 (module attribute)
__version__ = "0.1.0"
