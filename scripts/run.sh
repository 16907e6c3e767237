#!/usr/bin/env bash
# The main job: set up (idempotent), then run the pipeline on the bundled video and print live
# what it sees. Launch arguments pass through, e.g.  bash scripts/run.sh camera:=0
# or  bash scripts/run.sh --duration 30 video:=my_clip.mp4
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export GLOG_minloglevel=${GLOG_minloglevel:-2}
exec "$ROOT/.venv/bin/facephi-launch" run_monitor:=true "$@"
