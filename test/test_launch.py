"""launch/emotion.launch.py under the real launch.LaunchService (what `ros2 launch` runs), and
the project's own launcher facephi-launch: the same node set, lifecycle autostart, the failure
policy (a node that cannot start stops the launch; one that dies later is respawned) and a
clean Ctrl-C.

The real `launch` and `launch_ros` are not on PyPI: scripts/test.sh installs them from
../shared/vendor when that folder exists. Where they are absent, the real-launch tests skip
with a message, and the launch file is checked instead with small stand-ins for those modules
that only record what the file asks for (a declared fake, used only there).
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import psutil
import pytest
import yaml
from rosnodes import LineReader, children

from facephi_ros import launch_spec
from facephi_ros.launcher import command_for, package_paths, write_overrides

REPO = Path(__file__).resolve().parent.parent
REAL_LAUNCH = importlib.util.find_spec("launch_ros") is not None and importlib.util.find_spec("launch.actions") is not None
needs_real_launch = pytest.mark.skipif(not REAL_LAUNCH, reason="the real launch/launch_ros are not installed "
                                       "(FACEPHI_VENDOR=<vendor folder> bash scripts/setup.sh)")
stand_ins_only = pytest.mark.skipif(REAL_LAUNCH and not os.environ.get("FACEPHI_TEST_STAND_INS"), reason="the real launch is installed: the launch file is tested "
                                    "under launch.LaunchService instead of stand-ins")


def _install_launch_stand_ins(monkeypatch):
    recorded = {"nodes": [], "env": {}}

    class Anything:  # event handlers, actions: recorded only by the calls above
        def __init__(self, *a, **kw):
            pass

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
                                                SetEnvironmentVariable=SetEnvironmentVariable, EmitEvent=Anything,
                                                LogInfo=Anything, RegisterEventHandler=Anything),
        "launch.event_handlers": types.SimpleNamespace(OnProcessExit=Anything),
        "launch.events": types.SimpleNamespace(Shutdown=Anything),
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
    {"appearance": "true"},
]


@stand_ins_only
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
        assert ("autostart" in overrides) == (p.name in ("camera", "face_mesh", "emotion", "facephi"))
        # the launcher passes the same overrides through a parameter file
        cmd = command_for(p, lib_dir, write_overrides(p, tmp_path))
        assert cmd[0] == str(lib_dir / node["executable"]) and f"__node:={node['name']}" in cmd
        files = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--params-file"]
        assert Path(files[0]).name == "facephi.yaml"
        launcher_overrides = yaml.safe_load(Path(files[1]).read_text())[p.name]["ros__parameters"] if len(files) > 1 else {}
        assert launcher_overrides == overrides


@stand_ins_only
def test_arguments_reach_the_nodes(monkeypatch):
    nodes, _ = run_launch_file(monkeypatch, {"camera": "/dev/video2", "debug_image": "true"})
    by_name = {n["name"]: n["parameters"][1] for n in nodes}
    assert by_name["camera"] == {"source": "/dev/video2", "autostart": True}
    assert by_name["face_mesh"] == {"publish_debug_image": True, "autostart": True}
    with pytest.raises(ValueError, match="unknown launch argument"):
        launch_spec.plan({"camra": "0"}, "x.yaml")


def test_plan_arguments():
    """The launchers' one source of truth: autostart reaches the managed nodes only, hri starts the bridge."""
    plan = {n.name: n for n in launch_spec.plan({"autostart": "false", "hri": "true"}, "x.yaml")}
    assert set(plan) == {"camera", "face_mesh", "emotion", "facephi", "hri_bridge"}
    assert all(plan[n].overrides["autostart"] is False for n in ("camera", "face_mesh", "emotion", "facephi"))
    assert "autostart" not in plan["hri_bridge"].overrides
    assert "appearance" not in plan["face_mesh"].overrides  # off unless asked
    plan = {n.name: n for n in launch_spec.plan({"appearance": "true"}, "x.yaml")}
    assert plan["face_mesh"].overrides["appearance"] is True
    assert all("appearance" not in plan[n].overrides for n in plan if n != "face_mesh")
    with pytest.raises(ValueError, match="unknown launch argument"):
        launch_spec.plan({"camra": "0"}, "x.yaml")


def test_launcher_takes_launch_arguments_before_and_after_its_options():
    """scripts/run.sh puts run_monitor:=true first and passes the user's words after it, e.g.
    `--duration 30 appearance:=true`: arguments on both sides of an option reach the plan."""
    out = subprocess.run([sys.executable, "-m", "facephi_ros.launcher", "run_monitor:=true", "--print-plan",
                          "appearance:=true"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = {ln.split("__node:=")[1].split()[0]: ln for ln in out.stdout.splitlines() if "__node:=" in ln}
    assert "'appearance': True" in lines["face_mesh"] and "monitor" in lines, out.stdout


def _stop(proc, reader, timeout: float = 40.0) -> str:
    proc.send_signal(signal.SIGINT)
    return reader.finish(timeout)


def _start(cmd):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return proc, LineReader(proc)


def test_launcher_starts_and_stops_cleanly(ros):
    proc, out = _start([sys.executable, "-m", "facephi_ros.launcher", "run_monitor:=true"])
    try:
        assert out.wait("1 face: face #", 90), out.text
        kids = children(proc.pid)
        assert {"camera_node", "face_mesh_node", "emotion_node", "facephi_node", "monitor_node"} <= {
            Path(part).name for c in kids for part in c.cmdline()}
    finally:
        text = _stop(proc, out)
    assert proc.returncode == 0, text
    gone, alive = psutil.wait_procs(kids, timeout=10)
    assert not alive, f"children still running: {[c.pid for c in alive]}"
    assert "Traceback" not in text
    assert "[ERROR]" not in text, text[-2000:]  # frames in flight at Ctrl-C are dropped quietly


@pytest.mark.parametrize("delay", [0.5, 3.0])
def test_stopped_while_starting_exits_quietly(ros, delay):
    """Ctrl-C during the nodes' imports or model loading: no traceback from any of them."""
    proc, out = _start([sys.executable, "-m", "facephi_ros.launcher"])
    assert out.wait("[facephi-launch] starting", 30), out.text

    time.sleep(delay)  # the point of the test is to interrupt at some moment of the start-up
    text = _stop(proc, out)
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "RCLError" not in text, text[-3000:]


FINALIZER_INTERRUPTED = """
import signal, sys, time
from facephi_ros.nodes.common import redeliver_interrupts_from_finalizers
if sys.argv[1] == "hooked":
    redeliver_interrupts_from_finalizers()

class Finalized:  # a library object whose clean-up runs when the Ctrl-C arrives
    def __del__(self):
        signal.raise_signal(signal.SIGINT)  # the default handler raises KeyboardInterrupt in here
        sum(range(1000))

try:
    Finalized()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sum(range(1000))  # the model loading on
    print("still loading after the Ctrl-C", flush=True)
except KeyboardInterrupt:
    print("stopped", flush=True)
"""


@pytest.mark.parametrize("hooked", [True, False])
def test_interrupt_inside_a_finalizer_still_stops_the_node(hooked):
    """A Ctrl-C that lands in an object's __del__ (as in a FacePhi node loading its tokenizer) is
    delivered again outside it: the node stops, with no "Exception ignored" traceback. Without the
    hook (the control) Python drops the interrupt with a traceback and the loading goes on."""
    r = subprocess.run([sys.executable, "-c", FINALIZER_INTERRUPTED, "hooked" if hooked else "plain"],
                       capture_output=True, text=True, timeout=60)
    if hooked:
        assert r.stdout.strip() == "stopped" and "Traceback" not in r.stderr, r.stdout + r.stderr
    else:
        assert r.stdout.strip() == "still loading after the Ctrl-C" and "Exception ignored" in r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("module", ["numpy", "torch", "facephi_ros.landmarks.tracker"])
def test_node_interrupted_while_importing_exits_quietly(ros, module):
    """Ctrl-C that lands at a known point inside the node's imports (Python's import-time log says
    when `module` has finished importing, a second or more before the node's own module is done): exit 0, no
    traceback and no "Exception ignored" from the import machinery."""
    lib_dir, _ = package_paths()
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    proc = subprocess.Popen([str(lib_dir / "emotion_node")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    out = LineReader(proc)
    t_end = time.monotonic() + 60
    try:
        while not any(ln.rsplit("|", 1)[-1].strip() == module for ln in out.text.splitlines()):
            assert time.monotonic() < t_end and proc.poll() is None, out.text[-2000:]
            time.sleep(0.02)
    finally:
        text = _stop(proc, out, 30)
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text and "Exception ignored" not in text and "KeyboardInterrupt" not in text, text[-3000:]


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


# -- the launch file under the real launch.LaunchService ----------------------------------------
LAUNCH_FILE = str(REPO / "launch" / "emotion.launch.py")


def _launch(*args):
    return _start([sys.executable, str(REPO / "test" / "run_launch_file.py"), LAUNCH_FILE, *args])


@needs_real_launch
def test_launch_file_runs_the_set_active_and_respawns_a_dead_node(probe):
    """All default nodes come up active by themselves (autostart), faces flow to the monitor,
    a node killed later is respawned, and Ctrl-C stops everything cleanly."""
    from facephi_ros.msg import FaceLandmarksArray

    from facephi_ros.nodes.common import FACES_TOPIC

    probe.subscribe(FaceLandmarksArray, FACES_TOPIC)
    proc, out = _launch("run_monitor:=true")
    try:
        assert out.wait("1 face: face #", 120), out.text[-3000:]
        for name in ("camera", "face_mesh", "emotion", "facephi"):
            assert probe.get_state(name, timeout=120) == "active", name  # FacePhi answers once its LLM is loaded
        fm = children(proc.pid, "face_mesh_node")
        assert len(fm) == 1
        fm[0].kill()
        assert out.wait("process has died", 20), out.text[-2000:]
        n = len(probe.messages(FACES_TOPIC))
        assert probe.wait_for(FACES_TOPIC, n + 30, 90), "landmarks did not resume after the respawn"
        again = children(proc.pid, "face_mesh_node")
        assert len(again) == 1 and again[0].pid != fm[0].pid
        kids = children(proc.pid)
    finally:
        text = _stop(proc, out)
    assert proc.returncode == 0, text[-3000:]
    _, alive = psutil.wait_procs(kids, timeout=10)
    assert not alive and "Traceback" not in text, text[-3000:]


@needs_real_launch
def test_launch_file_without_autostart_leaves_nodes_for_a_manager(probe):
    proc, out = _launch("autostart:=false", "run_facephi:=false")
    try:
        for name in ("camera", "face_mesh", "emotion"):
            assert probe.get_state(name, timeout=60) == "unconfigured", name
        assert probe.change_state("emotion", "configure") and probe.change_state("emotion", "activate")
        assert probe.get_state("emotion") == "active"
    finally:
        text = _stop(proc, out)
    assert proc.returncode == 0 and "Traceback" not in text, text[-3000:]


@needs_real_launch
def test_launch_file_stops_when_a_node_cannot_start(ros, tmp_path):
    """A missing model: the emotion node's configure fails (exit status 2), and the launch stops
    with its one-line reason instead of restarting it forever."""
    bad = tmp_path / "params.yaml"
    src = yaml.safe_load((REPO / "config" / "facephi.yaml").read_text())
    src["emotion"]["ros__parameters"]["model_dir"] = str(tmp_path / "no_model")
    bad.write_text(yaml.safe_dump(src))
    proc, out = _launch(f"params_file:={bad}", "run_facephi:=false")
    text = out.finish(90)
    reason = f"{tmp_path / 'no_model' / 'model.json'} not found"
    assert text.count(reason) == 1, text[-3000:]  # started once, not respawned
    assert "emotion could not start (exit status 2); stopping the launch" in text
    assert "Traceback" not in text, text[-3000:]
    left = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and any(str(bad) in part for part in p.info["cmdline"])]
    assert not left, "nodes left running"


@needs_real_launch
def test_launch_file_starts_the_hri_bridge(probe):
    from hri_msgs.msg import IdsList

    probe.subscribe(IdsList, "/humans/faces/tracked")
    proc, out = _launch("hri:=true", "run_facephi:=false")
    try:
        assert probe.wait_until("/humans/faces/tracked", lambda ms: any(len(m.ids) == 1 for m in ms), 90), out.text[-3000:]
    finally:
        text = _stop(proc, out)
    assert proc.returncode == 0 and "Traceback" not in text, text[-3000:]
