"""launch/emotion.launch.py and facephi-launch start the same node set with the same parameters.

ROS 2 `launch`/`launch_ros` cannot be installed here (not on PyPI or in Debian), so this test
loads the real launch file with small stand-ins for those modules that only record what the
file asks for (a declared fake, as the brief allows where the real thing cannot run). The
launcher side is the real one.
"""
from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import yaml

from facephi_ros import launch_spec
from facephi_ros.launcher import command_for, package_paths, write_overrides

REPO = Path(__file__).resolve().parent.parent


def _install_launch_stand_ins(monkeypatch):
    recorded = {"nodes": [], "env": {}}

    class LaunchDescription(list):
        pass

    class DeclareLaunchArgument:
        def __init__(self, name, default_value="", description=""):
            self.name, self.default, self.description = name, default_value, description

    class OpaqueFunction:
        def __init__(self, function):
            self.function = function

    class SetEnvironmentVariable:
        def __init__(self, name, value):
            recorded["env"][name] = value

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    class Node:
        def __init__(self, **kw):
            recorded["nodes"].append(kw)

    mods = {
        "launch": types.SimpleNamespace(LaunchDescription=LaunchDescription),
        "launch.actions": types.SimpleNamespace(DeclareLaunchArgument=DeclareLaunchArgument, OpaqueFunction=OpaqueFunction,
                                                SetEnvironmentVariable=SetEnvironmentVariable),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=LaunchConfiguration),
        "launch_ros": types.SimpleNamespace(),
        "launch_ros.actions": types.SimpleNamespace(Node=Node),
    }
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return recorded


def run_launch_file(monkeypatch, args: dict) -> tuple[list, dict]:
    recorded = _install_launch_stand_ins(monkeypatch)
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    spec = importlib.util.spec_from_file_location("emotion_launch", REPO / "launch" / "emotion.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    desc = mod.generate_launch_description()
    declared = {a.name: a.default for a in desc if hasattr(a, "default")}
    context = declared | args
    for action in desc:
        if hasattr(action, "function"):
            action.function(context)
    return recorded["nodes"], declared | {"_env": recorded["env"]}


CASES = [
    {},
    {"camera": "0"},
    {"video": "/tmp/clip.mp4", "loop": "false", "debug_image": "true"},
    {"run_camera": "false", "run_monitor": "true"},
]


@pytest.mark.parametrize("args", CASES)
def test_launch_file_and_launcher_agree(monkeypatch, tmp_path, args):
    nodes, declared = run_launch_file(monkeypatch, args)
    assert set(declared) - {"_env"} == {a.name for a in launch_spec.LAUNCH_ARGUMENTS}
    assert declared["_env"]["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("config/fastdds.xml")
    lib_dir, params = package_paths()
    plan = launch_spec.plan(args, str(params))
    assert [n["name"] for n in nodes] == [p.name for p in plan]
    for node, p in zip(nodes, plan):
        assert node["package"] == "facephi_ros" and node["executable"] == p.executable
        assert (node["respawn"], node["respawn_delay"]) == (p.respawn, p.respawn_delay)
        file_params, overrides = node["parameters"]
        assert Path(file_params).name == "facephi.yaml"
        # the launcher passes the same overrides through a parameter file
        cmd = command_for(p, lib_dir, write_overrides(p, tmp_path))
        assert cmd[0] == str(lib_dir / node["executable"]) and f"__node:={node['name']}" in cmd
        files = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--params-file"]
        assert Path(files[0]).name == "facephi.yaml"
        launcher_overrides = yaml.safe_load(Path(files[1]).read_text())[p.name]["ros__parameters"] if len(files) > 1 else {}
        assert launcher_overrides == overrides


def test_arguments_reach_the_nodes(monkeypatch):
    nodes, _ = run_launch_file(monkeypatch, {"camera": "/dev/video2", "debug_image": "true"})
    by_name = {n["name"]: n["parameters"][1] for n in nodes}
    assert by_name["camera"] == {"source": "/dev/video2"}
    assert by_name["face_mesh"] == {"publish_debug_image": True}
    with pytest.raises(ValueError, match="unknown launch argument"):
        launch_spec.plan({"camra": "0"}, "x.yaml")


def test_launcher_starts_and_stops_cleanly(ros):
    proc = subprocess.Popen([sys.executable, "-m", "facephi_ros.launcher", "run_monitor:=true"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    t_end = time.monotonic() + 60
    while time.monotonic() < t_end:
        line = proc.stdout.readline()
        lines.append(line)
        if "1 face: face #" in line:
            break
    assert any("1 face: face #" in line for line in lines), "".join(lines)
    children = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    for pid in children:
        if int(pid) != proc.pid:
            assert subprocess.run(["kill", "-0", pid], capture_output=True).returncode != 0, f"child {pid} still running"
    assert "Traceback" not in out
    assert "[ERROR]" not in out, out[-2000:]  # frames in flight at Ctrl-C are dropped quietly


def test_launcher_stops_all_when_a_node_fails(ros, tmp_path):
    bad = tmp_path / "params.yaml"
    src = yaml.safe_load((REPO / "config" / "facephi.yaml").read_text())
    src["face_mesh"]["ros__parameters"]["model_path"] = str(tmp_path / "missing.task")
    bad.write_text(yaml.safe_dump(src))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "facephi_ros.launcher", f"params_file:={bad}"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "face_mesh exited with status 2" in r.stderr
    assert f"face_landmarker not found at {tmp_path / 'missing.task'}" in r.stderr
    assert time.monotonic() - t0 < 40
