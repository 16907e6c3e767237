"""Where shipped files live: the source tree when run from a checkout, else the package's
share directory of a colcon/CMake install (share/facephi_ros/{models,config})."""
from __future__ import annotations

from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def shipped(sub: str) -> Path:
    """Path of a shipped folder (`models`, `config`)."""
    local = SOURCE_ROOT / sub
    if local.exists():
        return local
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("facephi_ros")) / sub
    except Exception:
        return local
