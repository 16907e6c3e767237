#!/usr/bin/env bash
# The test command: set up (idempotent), then run the test suite with real rclpy nodes,
# the real MediaPipe model and the real face videos in ../shared/data (FACEPHI_DATA overrides).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The upstream hri_msgs, launch and launch_ros sources beside the checkout (../shared/vendor), when
# present, are built too: the ROS4HRI bridge and the real-launch tests use them (they skip without).
if [ -z "${FACEPHI_VENDOR:-}" ] && [ -d "$ROOT/../shared/vendor" ]; then
  export FACEPHI_VENDOR="$ROOT/../shared/vendor"
fi
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
export GLOG_minloglevel=${GLOG_minloglevel:-2}
exec .venv/bin/python -m pytest "$@"
