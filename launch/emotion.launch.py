"""ros2 launch facephi_ros emotion.launch.py [camera:=0 | video:=/path/clip.mp4] [run_...:=true|false]

Starts the facephi_ros node set described in facephi_ros/launch_spec.py, with parameters from
config/facephi.yaml (or params_file:=...) and the launch arguments listed there.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from facephi_ros.launch_spec import LAUNCH_ARGUMENTS, plan


def _nodes(context, *args, **kwargs):
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGUMENTS}
    params = os.path.join(get_package_share_directory("facephi_ros"), "config", "facephi.yaml")
    return [
        Node(package="facephi_ros", executable=n.executable, name=n.name, output="screen",
             parameters=[n.params_file, n.overrides], emulate_tty=True,
             respawn=n.respawn, respawn_delay=n.respawn_delay)
        for n in plan(values, params)
    ]


def generate_launch_description():
    actions = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description) for a in LAUNCH_ARGUMENTS]
    if not (os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE")):
        # 16 MB shared-memory segments: best-effort images larger than 512 KB are otherwise lost.
        profile = os.path.join(get_package_share_directory("facephi_ros"), "config", "fastdds.xml")
        actions.append(SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile))
    return LaunchDescription(actions + [OpaqueFunction(function=_nodes)])
