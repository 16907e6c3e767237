"""facephi-launch: start the facephi_ros node set as separate processes, like
`ros2 launch facephi_ros emotion.launch.py`, where ROS 2 launch is not installed.

    facephi-launch                       # bundled video, all default nodes
    facephi-launch camera:=0             # a camera instead
    facephi-launch video:=clip.mp4 loop:=false run_monitor:=true --duration 20

Arguments are the launch file's (see facephi_ros/launch_spec.py). Ctrl-C or SIGTERM stops every
node cleanly (SIGINT, then SIGTERM, then SIGKILL after a grace period). A node that cannot start
(exit status 2: a missing model, a bad parameter) stops the whole set and the launcher exits
with that status; a node that dies otherwise (a crash, a kill) is restarted after
respawn_delay seconds while the others keep running, as ROS 2 launch does with respawn=True.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from .launch_spec import LAUNCH_ARGUMENTS, STARTUP_FAILURE, NodeLaunch, plan

PACKAGE = "facephi_ros"


def package_paths() -> tuple[Path, Path]:
    """(lib dir with the node executables, default parameter file), from the ament index."""
    from ament_index_python.packages import (
        get_package_prefix,
        get_package_share_directory,
    )

    prefix = Path(get_package_prefix(PACKAGE))
    return prefix / "lib" / PACKAGE, Path(get_package_share_directory(PACKAGE)) / "config" / "facephi.yaml"


def command_for(node: NodeLaunch, lib_dir: Path, override_file: Path | None) -> list[str]:
    cmd = [str(lib_dir / node.executable), "--ros-args", "-r", f"__node:={node.name}", "--params-file", node.params_file]
    if override_file is not None:
        cmd += ["--params-file", str(override_file)]
    return cmd


def write_overrides(node: NodeLaunch, folder: Path) -> Path | None:
    if not node.overrides:
        return None
    path = folder / f"{node.name}.overrides.yaml"
    path.write_text(yaml.safe_dump({node.name: {"ros__parameters": node.overrides}}))
    return path


def _die_with_parent() -> None:
    """Children get SIGTERM if the launcher itself dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)
    except OSError:
        pass


class Launcher:
    def __init__(self, nodes: list[NodeLaunch], lib_dir: Path, grace: float = 5.0):
        self.nodes, self.lib_dir, self.grace = nodes, lib_dir, grace
        self.procs: dict[str, subprocess.Popen] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="facephi-launch-")
        self._stop = False

    def start(self) -> None:
        for n in self.nodes:
            exe = self.lib_dir / n.executable
            if not exe.exists():
                raise FileNotFoundError(f"executable {exe} not found: run `bash scripts/setup.sh` (or colcon build)")
            self._spawn(n)

    def _spawn(self, n: NodeLaunch) -> None:
        cmd = command_for(n, self.lib_dir, write_overrides(n, Path(self._tmp.name)))
        self.procs[n.name] = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent)

    def wait(self, duration: float | None = None) -> int:
        """Run until a signal, `duration` seconds, or a node failing; then stop all. Exit status."""
        def _handler(signum, frame):
            self._stop = True

        old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
        code = 0
        t_end = time.monotonic() + duration if duration else None
        respawn_at: dict[str, float] = {}
        nodes = {n.name: n for n in self.nodes}
        try:
            while not self._stop and (t_end is None or time.monotonic() < t_end):
                for name, p in list(self.procs.items()):
                    rc = p.poll()
                    if rc in (None, 0) or name in respawn_at:
                        continue
                    if rc == STARTUP_FAILURE:
                        print(f"[facephi-launch] {name} exited with status {rc}; stopping the others", file=sys.stderr, flush=True)
                        code = rc
                        self._stop = True
                        break
                    n = nodes[name]
                    if n.respawn:
                        print(f"[facephi-launch] {name} died (status {rc}); restarting it in {n.respawn_delay:.0f} s, "
                              "the others keep running", file=sys.stderr, flush=True)
                        respawn_at[name] = time.monotonic() + n.respawn_delay
                for name, t in list(respawn_at.items()):
                    if not self._stop and time.monotonic() >= t:
                        del respawn_at[name]
                        self._spawn(nodes[name])
                if not respawn_at and all(p.poll() is not None for p in self.procs.values()):
                    break
                time.sleep(0.1)
        finally:
            self.stop()
            for s, h in old.items():
                signal.signal(s, h)
        return code

    def stop(self) -> None:
        for sig, wait in ((signal.SIGINT, self.grace), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            alive = [p for p in self.procs.values() if p.poll() is None]
            if not alive:
                break
            for p in alive:
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass
            t_end = time.monotonic() + wait
            while time.monotonic() < t_end and any(p.poll() is None for p in alive):
                time.sleep(0.05)
        self._tmp.cleanup()


def parse(argv: list[str]) -> tuple[dict[str, str], argparse.Namespace]:
    ap = argparse.ArgumentParser(prog="facephi-launch", description=__doc__.split("\n\n")[0],
                                 epilog="launch arguments (name:=value):\n" + "\n".join(
                                     f"  {a.name}:={a.default or repr('')}  {a.description}" for a in LAUNCH_ARGUMENTS),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--print-plan", action="store_true", help="print the commands and exit")
    ap.add_argument("args", nargs="*", metavar="name:=value")
    ns = ap.parse_intermixed_args(argv)  # launch arguments may come before and after the options
    values = {}
    for item in ns.args:
        if ":=" not in item:
            ap.error(f"expected name:=value, got '{item}'")
        k, v = item.split(":=", 1)
        values[k] = v
    return values, ns


def main(argv: list[str] | None = None) -> int:
    values, ns = parse(sys.argv[1:] if argv is None else argv)
    lib_dir, params = package_paths()
    try:
        nodes = plan(values, str(params))
    except ValueError as e:
        print(f"facephi-launch: error: {e}", file=sys.stderr)
        return 2
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if not os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE"):
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(params.parent / "fastdds.xml"))
    launcher = Launcher(nodes, lib_dir)
    if ns.print_plan:
        for n in nodes:
            print(" ".join(command_for(n, lib_dir, None)), n.overrides or "")
        return 0
    print(f"[facephi-launch] starting {', '.join(n.name for n in nodes)} (Ctrl-C to stop)", flush=True)
    try:
        launcher.start()
    except FileNotFoundError as e:
        launcher.stop()
        print(f"facephi-launch: error: {e}", file=sys.stderr)
        return 2
    return launcher.wait(ns.duration)


if __name__ == "__main__":
    sys.exit(main())
