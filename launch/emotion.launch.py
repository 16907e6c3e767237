"""ros2 launch facephi_ros emotion.launch.py [camera:=0 | video:=/path/clip.mp4] [run_...:=true|false]
    [autostart:=true|false] [hri:=true]

Starts the facephi_ros node set described in facephi_ros/launch_spec.py, with parameters from
config/facephi.yaml (or params_file:=...) and the launch arguments listed there. The camera,
face-mesh, emotion and FacePhi nodes are managed (lifecycle) nodes: with autostart:=true (the
default) each takes itself to active; with autostart:=false they wait unconfigured for a
lifecycle manager.

Failure policy (the same as the project's own launcher, facephi-launch): a node that cannot
start (exit status 2: a bad parameter, a missing model, a failed configure) stops the whole
launch with its one-line reason; a node that dies later is respawned after a short delay.
"""
import importlib.util
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from facephi_ros.launch_spec import LAUNCH_ARGUMENTS, STARTUP_FAILURE, plan


def _stop_if_it_could_not_start(name):
    def on_exit(event, context):
        if event.returncode != STARTUP_FAILURE:
            return None  # a later death: respawn=True restarts it
        reason = f"{name} could not start (exit status {STARTUP_FAILURE}); stopping the launch"
        return [LogInfo(msg=f"[facephi_ros] {reason}"), EmitEvent(event=Shutdown(reason=reason))]
    return on_exit


def _nodes(context, *args, **kwargs):
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGUMENTS}
    params = os.path.join(get_package_share_directory("facephi_ros"), "config", "facephi.yaml")
    actions = []
    for n in plan(values, params):
        if n.name == "hri_bridge" and importlib.util.find_spec("hri_msgs") is None:
            actions.append(LogInfo(msg="[facephi_ros] hri:=true but hri_msgs is not installed: the ROS4HRI bridge "
                                       "is not started (apt install ros-<distro>-hri-msgs)"))
            continue
        node = Node(package="facephi_ros", executable=n.executable, name=n.name, output="screen",
                    parameters=[n.params_file, n.overrides], emulate_tty=True,
                    respawn=n.respawn, respawn_delay=n.respawn_delay)
        actions += [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_stop_if_it_could_not_start(n.name)))]
    return actions


def generate_launch_description():
    actions = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description) for a in LAUNCH_ARGUMENTS]
    if not (os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") or os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE")):
        # 16 MB shared-memory segments: best-effort images larger than 512 KB are otherwise lost.
        profile = os.path.join(get_package_share_directory("facephi_ros"), "config", "fastdds.xml")
        actions.append(SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile))
    return LaunchDescription(actions + [OpaqueFunction(function=_nodes)])
