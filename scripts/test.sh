#!/usr/bin/env bash
# The test command: set up (idempotent), then run the test suite with real rclpy nodes,
# the real MediaPipe model and the real face videos in ../shared/data (FACEPHI_DATA overrides).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
export GLOG_minloglevel=${GLOG_minloglevel:-2}
exec .venv/bin/python -m pytest "$@"
