"""The node set of facephi_ros, in one place.

launch/emotion.launch.py (ROS 2 launch, on robots) and facephi_ros.launcher (this project's own
launcher, where `launch` is not installable) both build their processes from `plan()`, so that
they start the same nodes with the same parameters. test/test_launch.py checks that they agree.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


LAUNCH_ARGUMENTS = (
    LaunchArgument("video", "", "video file to play (default: the bundled clip WolfgangLanger_Pexels.mp4)"),
    LaunchArgument("camera", "", "camera device index or path (e.g. 0 or /dev/video0); wins over video"),
    LaunchArgument("loop", "true", "loop the video file"),
    LaunchArgument("params_file", "", "parameter file (default: config/facephi.yaml of the package)"),
    LaunchArgument("debug_image", "false", "publish /facephi/debug_image with the mesh drawn"),
    LaunchArgument("appearance", "false", "opt-in accuracy mode: the face-mesh node also runs a CNN on each face's "
                   "aligned crop and publishes its embedding (numbers, never pixels); the emotion node then uses "
                   "its hybrid model"),
    LaunchArgument("run_camera", "true", "start the camera node (false: images come from elsewhere, e.g. a bag)"),
    LaunchArgument("run_face_mesh", "true", "start the face-mesh node"),
    LaunchArgument("run_emotion", "true", "start the LSTM emotion node (/emotion)"),
    LaunchArgument("run_facephi", "true", "start the FacePhi language node (/emotion/description)"),
    LaunchArgument("run_monitor", "false", "start the monitor node that prints what the pipeline sees"),
    LaunchArgument("hri", "false", "start the ROS4HRI (REP-155) bridge: /humans/faces/... (needs hri_msgs)"),
    LaunchArgument("autostart", "true", "take the managed (lifecycle) nodes to active at start; false: they wait "
                   "unconfigured for a lifecycle manager"),
)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str
    enabled_by: str  # launch argument that switches it on/off
    managed: bool = False  # a lifecycle node (takes the `autostart` parameter)


NODES = (
    NodeSpec("camera", "camera_node", "run_camera", managed=True),
    NodeSpec("face_mesh", "face_mesh_node", "run_face_mesh", managed=True),
    NodeSpec("emotion", "emotion_node", "run_emotion", managed=True),
    NodeSpec("facephi", "facephi_node", "run_facephi", managed=True),
    NodeSpec("monitor", "monitor_node", "run_monitor"),
    NodeSpec("hri_bridge", "hri_bridge_node", "hri"),
)


# A node that dies unexpectedly is restarted after this delay while the others keep running
# (ROS 2 launch: respawn=True). A node that exits with status 2 could not start (bad model or
# parameter, a failed configure transition): then the whole set is stopped, with the node's
# one-line reason, so that nothing is left half-running. Both launchers follow this policy.
RESPAWN_DELAY = 2.0
STARTUP_FAILURE = 2


@dataclass
class NodeLaunch:
    name: str
    executable: str
    params_file: str
    overrides: dict = field(default_factory=dict)
    respawn: bool = True
    respawn_delay: float = RESPAWN_DELAY


def _true(value: str) -> bool:
    v = str(value).strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got '{value}'")


def defaults() -> dict[str, str]:
    return {a.name: a.default for a in LAUNCH_ARGUMENTS}


def plan(args: dict[str, str], default_params_file: str) -> list[NodeLaunch]:
    """The nodes to start for launch arguments `args` (unknown names are an error)."""
    unknown = set(args) - {a.name for a in LAUNCH_ARGUMENTS}
    if unknown:
        raise ValueError(f"unknown launch argument(s): {', '.join(sorted(unknown))}; known: {', '.join(a.name for a in LAUNCH_ARGUMENTS)}")
    a = defaults() | dict(args)
    params_file = a["params_file"] or default_params_file
    overrides: dict[str, dict] = {n.name: {} for n in NODES}
    if a["camera"]:
        overrides["camera"]["source"] = str(a["camera"])
    elif a["video"]:
        overrides["camera"]["source"] = str(a["video"])
        overrides["camera"]["loop"] = _true(a["loop"])
    else:
        overrides["camera"]["loop"] = _true(a["loop"])
    if _true(a["debug_image"]):
        overrides["face_mesh"]["publish_debug_image"] = True
    if _true(a["appearance"]):
        overrides["face_mesh"]["appearance"] = True
    for n in NODES:
        if n.managed:
            overrides[n.name]["autostart"] = _true(a["autostart"])
    return [NodeLaunch(n.name, n.executable, params_file, overrides[n.name]) for n in NODES if _true(a[n.enabled_by])]
