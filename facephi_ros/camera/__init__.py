"""Frame sources (ROS-free)."""
from .source import FrameSource, SourceError, describe_source  # noqa: F401
